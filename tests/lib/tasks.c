/* tasks.c: see tasks.h. */
#include <dirent.h>
#include <errno.h>
#include <time.h>

#include "tasks.h"

int tasks_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

int tasks_wait(int want)
{
	int n = tasks_count();

	/* 30000 naps of 1 ms or more: at least 30 s, whatever the load. */
	for (int i = 0; n != want && i < 30000; i++) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		n = tasks_count();
	}
	return n;
}
