/* Shared between the test guest's parts. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include <stdint.h>

extern int test_failures;
void check(int ok, const char *what);
void run_all_tests(const char *cmdline);
void user_mode_init(void);
/* Starts the APs; returns how many CPUs run (the BSP included). */
int start_other_cpus(void);
/* Runs fn(arg) at CPL 3 (IOPL 3) and returns its result. */
long run_user(long (*fn)(void *), void *arg);
void guest_exception(uint64_t vector, const uint64_t *frame);
/* The snapshot test mode (counter.c). */
int counter_mode_wanted(const char *cmdline);
void run_counter_mode(const char *cmdline);

#endif
