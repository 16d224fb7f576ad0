/* A machine without a guest for the QMP server's tests: machine.h's
 * functions over a main loop and a fixed configuration, so the monitor's
 * output queue, dispatch and reply shapes are tested where /dev/kvm is
 * absent. */
#ifndef TESTS_COWVISOR_STUB_MACHINE_H
#define TESTS_COWVISOR_STUB_MACHINE_H

#include "machine/machine.h"

struct machine *stub_machine_create(const struct machine_config *cfg);
void stub_machine_destroy(struct machine *m);
/* How many times the monitor paused, resumed, reset or quit the machine
 * or pressed its power button ("power-button"). */
int stub_machine_calls(struct machine *m, const char *what);
/* As machine_handle_memory_fault: paused, and only a reset goes on. */
void stub_machine_lose_memory(struct machine *m);
/* What machine_replay_query answers from now on (file: a copy is kept). */
void stub_machine_set_replay(struct machine *m, enum machine_replay_mode mode, const char *file, uint64_t icount);
/* The guest ejects the device_add'ed device id (as its _EJ0 would): it
 * goes in the main loop, which tells the monitor. Any thread. */
void stub_machine_guest_eject(struct machine *m, const char *id);
/* The terminal on stdin/stdout as the machine's console (raw, with the
 * Ctrl-A escapes and the monitor); the stub's guest echoes what it gets.
 * Undone by stub_machine_destroy. Returns false if stdin is no terminal. */
bool stub_machine_console_stdio(struct machine *m);
/* The serving options device_add gave device id (false: no such device). */
bool stub_machine_device_serving(struct machine *m, const char *id, struct machine_blk_options *o);
/* The break point replay-break set (0: none). */
uint64_t stub_machine_replay_break(struct machine *m);
/* The exit replay-seek asked for (0: none). */
uint64_t stub_machine_replay_seek(struct machine *m);

#endif
