/**
 * Work on several database sessions at once. Unlike Promise.all, a failure is
 * only reported once every branch has finished: a branch still running would
 * otherwise go on sending statements after the caller rolled the sessions back
 * (they would run outside any transaction) or into the retry's new
 * transaction (aborting it with 25P02).
 */
export async function together<T, R>(items: readonly T[], fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const settled = await Promise.allSettled(items.map((item, i) => fn(item, i)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<R>).value);
}
