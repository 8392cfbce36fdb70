/**
 * Where the broker asks for something to happen later. The broker does not know the implementation
 * (BullMQ in `jobs/`); it calls these after its change has committed. A call that fails is repaired
 * by the reconciler, and the proxies check `expiresAt` themselves, so a lost job never extends access.
 */
export interface Scheduler {
  /** Creates or moves the grant's expiry job to fire at `at`. */
  scheduleGrantExpiry(grantId: string, at: Date): Promise<void>;
  cancelGrantExpiry(grantId: string): Promise<void>;
  scheduleRequestTimeout(requestId: string, at: Date): Promise<void>;
  cancelRequestTimeout(requestId: string): Promise<void>;
  /** Issues the grant of an approved scheduled request at its start (job id = request id). */
  scheduleGrantStart(requestId: string, at: Date): Promise<void>;
  /** The daily reminder of an open break-glass review (job id = review id). */
  scheduleReviewReminder(reviewId: string, at: Date): Promise<void>;
  cancelReviewReminder(reviewId: string): Promise<void>;
}

export const noScheduler: Scheduler = {
  async scheduleGrantExpiry() {},
  async cancelGrantExpiry() {},
  async scheduleRequestTimeout() {},
  async cancelRequestTimeout() {},
  async scheduleGrantStart() {},
  async scheduleReviewReminder() {},
  async cancelReviewReminder() {},
};
