/* Shared between the test guest's parts. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

extern int test_failures;
void check(int ok, const char *what);
void run_all_tests(const char *cmdline);

#endif
