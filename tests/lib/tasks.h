/* tasks.h: the threads of the test's own process, for tests that check that a library
 * starts and joins its threads (librxgemm's copy threads). */
#ifndef RXGEMM_TESTS_TASKS_H
#define RXGEMM_TESTS_TASKS_H

/* Threads of this process now, from /proc/self/task; -1 when it cannot be read. */
int tasks_count(void);

#endif
