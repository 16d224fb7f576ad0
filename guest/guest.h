/* Shared between the test guest's parts. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include <stdint.h>

extern int test_failures;
void check(int ok, const char *what);
void run_all_tests(const char *cmdline);
void user_mode_init(void);
/* A 64-bit interrupt gate for vector n (user_mode_init loads the IDT). */
void idt_set_gate(int n, uint64_t handler, uint8_t dpl);
/* Starts the APs; returns how many CPUs run (the BSP included). */
int start_other_cpus(void);
/* Runs fn(arg) at CPL 3 (IOPL 3) and returns its result. */
long run_user(long (*fn)(void *), void *arg);
void guest_exception(uint64_t vector, const uint64_t *frame);
/* The snapshot test mode (counter.c). */
int counter_mode_wanted(const char *cmdline);
void run_counter_mode(const char *cmdline);
/* The record/replay test mode (replay_mode.c). */
int replay_mode_wanted(const char *cmdline);
void run_replay_mode(const char *cmdline);

#endif
