// The few parts of mongodb-mock-server (which ships no types) that test/helpers/mongo-wire.ts uses.
declare module 'mongodb-mock-server' {
  interface MockRequest {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- command documents are untyped wire data
    document: Record<string, any>;
    /** The decoded wire message; `ns` is `<db>.$cmd` for a command. */
    response: { ns: string };
    reply(doc: Record<string, unknown>): void;
  }
  interface MockServer {
    uri(): string;
    setMessageHandler(handler: (req: MockRequest) => void): void;
    destroy(): Promise<void>;
    on(event: string, listener: (...args: unknown[]) => void): void;
  }
  const mock: {
    createServer(port?: number, host?: string, options?: Record<string, unknown>): Promise<MockServer>;
    cleanup(): Promise<void>;
    DEFAULT_ISMASTER: Record<string, unknown>;
  };
  export default mock;
}
