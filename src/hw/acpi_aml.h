/* A small AML encoder (ACPI 6.4 chapter 20): the bytes of a DSDT's
 * definition block, written front to back. Objects with a PkgLength
 * (Scope, Device, Method, If, While, Package, Field) are opened and
 * closed; the length is patched in at the close. Errors (out of memory,
 * a bad name, unbalanced opens) stick and are reported once at the end. */
#ifndef HW_ACPI_AML_H
#define HW_ACPI_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define AML_MAX_DEPTH 16

/* Opcodes (one byte, or 0x5b and a second byte as 0x5bxx). */
enum aml_op {
    AML_ZERO = 0x00, AML_ONE = 0x01, AML_NAME = 0x08, AML_STRING = 0x0d,
    AML_SCOPE = 0x10, AML_BUFFER = 0x11, AML_PACKAGE = 0x12, AML_METHOD = 0x14,
    AML_LOCAL0 = 0x60, AML_ARG0 = 0x68,
    AML_STORE = 0x70, AML_ADD = 0x72, AML_SUBTRACT = 0x74, AML_INCREMENT = 0x75,
    AML_SHIFT_LEFT = 0x79, AML_AND = 0x7b, AML_OR = 0x7d, AML_NOTIFY = 0x86,
    AML_LAND = 0x90, AML_LNOT = 0x92, AML_LEQUAL = 0x93, AML_LLESS = 0x95,
    AML_IF = 0xa0, AML_WHILE = 0xa2, AML_RETURN = 0xa4, AML_ONES = 0xff,
    AML_MUTEX = 0x5b01, AML_ACQUIRE = 0x5b23, AML_RELEASE = 0x5b27,
    AML_OPREGION = 0x5b80, AML_FIELD = 0x5b81, AML_DEVICE = 0x5b82,
};

/* Region spaces and field flags for OperationRegion/Field. */
#define AML_SYSTEM_IO 0x01
#define AML_FIELD_DWORD_ACC 0x03
#define AML_FIELD_WRITE_AS_ZEROS 0x40

struct aml {
    uint8_t *data;
    size_t len, cap;
    size_t open[AML_MAX_DEPTH];     /* where each open object's PkgLength goes */
    int depth;
    int error;                      /* the first failure (negative errno), sticky */
    const char *what;               /* what failed */
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);
/* 0, or the first failure described in err. */
int aml_finish(struct aml *a, struct error *err);

void aml_op(struct aml *a, enum aml_op op);
void aml_bytes(struct aml *a, const void *p, size_t n);
/* The shortest integer encoding (Zero, One, Ones, Byte...QWord). */
void aml_int(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* A NameString: "\\_SB.PCI0", "_HID", "^PCEJ"; segments shorter than
 * four characters are padded with '_' as ASL does. */
void aml_name(struct aml *a, const char *path);
/* An EISA id ("PNP0A03") as its compressed DWord. */
void aml_eisaid(struct aml *a, const char *id);
/* A Buffer of n bytes. */
void aml_buffer(struct aml *a, const void *p, size_t n);

/* Opens op and reserves its PkgLength; aml_close patches it. */
void aml_open(struct aml *a, enum aml_op op);
void aml_close(struct aml *a);

/* The common openers: the name (and for methods the flags) follow the
 * PkgLength. */
void aml_scope(struct aml *a, const char *name);
void aml_device(struct aml *a, const char *name);
void aml_method(struct aml *a, const char *name, int nargs, bool serialized);
/* Package(n) { ... }: the n elements follow (at most 255). */
void aml_package(struct aml *a, unsigned n);
/* Name(name, ...): the value is written next. */
void aml_name_decl(struct aml *a, const char *name);

#endif
