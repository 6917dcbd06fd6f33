/** Shared by the cluster tests and their node fixture. */

/** The 1 KB a test device answers to GET /kb. */
export function kilobyte(id: string): string {
  return `${id}.`.repeat(1024).slice(0, 1024);
}
