#include "guest.h"
#include "io.h"

void run_all_tests(const char *cmdline)
{
    (void)cmdline;
    check(1, "boot");
}
