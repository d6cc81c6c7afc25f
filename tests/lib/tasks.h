/* tasks.h: the threads of the test's own process, for tests that check that a library
 * starts and joins its threads (librxgemm's copy threads). */
#ifndef RXGEMM_TESTS_TASKS_H
#define RXGEMM_TESTS_TASKS_H

/* Threads of this process now, from /proc/self/task; -1 when it cannot be read. */
int tasks_count(void);

/* The count once it is want, waiting for it up to 30 s; the last count read if it never
 * gets there. A joined thread may still be listed for a moment: pthread_join returns when
 * the kernel clears the thread's id, before the thread is reaped and leaves
 * /proc/self/task (1 in about 5000 joins on an idle 2-core machine, more under load). So a
 * test that expects fewer threads waits for the count, never reads it once. */
int tasks_wait(int want);

#endif
