/* `-o help` of create, convert and amend, as qemu-img 7.2 prints it for
 * each format (iotest 082 compares every line). With a target file name,
 * the format's options and those of the file protocol under it are listed
 * together; without one, the format's alone and a note about the protocol.
 * Options QEMU lists that we do not implement (encryption, external data
 * files, nocow, extent_size_hint) are listed too, in QEMU's words: scripts
 * read the list, and creation refuses them with a message of its own. */
#include <stdio.h>
#include <string.h>

#include "cowimg.h"

struct option_help {
    const char *name, *type, *help;
};

#define PREALLOC_HELP "Preallocation mode (allowed values: "

static const struct option_help file_options[] = {
    { "extent_size_hint", "<size>", "Extent size hint for the image file, 0 to disable" },
    { "nocow", "<bool (on/off)>", "Turn off copy-on-write (valid only on btrfs)" },
    { "preallocation", "<str>", PREALLOC_HELP "off, falloc, full)" },
    { "size", "<size>", "Virtual disk size" },
    { NULL, NULL, NULL },
};

static const struct option_help raw_options[] = {
    { "size", "<size>", "Virtual disk size" },
    { NULL, NULL, NULL },
};

static const struct option_help qcow2_options[] = {
    { "backing_file", "<str>", "File name of a base image" },
    { "backing_fmt", "<str>", "Image format of the base image" },
    { "cluster_size", "<size>", "qcow2 cluster size" },
    { "compat", "<str>", "Compatibility level (v2 [0.10] or v3 [1.1])" },
    { "compression_type", "<str>", "Compression method used for image cluster compression" },
    { "data_file", "<str>", "File name of an external data file" },
    { "data_file_raw", "<bool (on/off)>", "The external data file must stay valid as a raw image" },
    { "encrypt.cipher-alg", "<str>", "Name of encryption cipher algorithm" },
    { "encrypt.cipher-mode", "<str>", "Name of encryption cipher mode" },
    { "encrypt.format", "<str>", "Encrypt the image, format choices: 'aes', 'luks'" },
    { "encrypt.hash-alg", "<str>", "Name of encryption hash algorithm" },
    { "encrypt.iter-time", "<num>", "Time to spend in PBKDF in milliseconds" },
    { "encrypt.ivgen-alg", "<str>", "Name of IV generator algorithm" },
    { "encrypt.ivgen-hash-alg", "<str>", "Name of IV generator hash algorithm" },
    { "encrypt.key-secret", "<str>", "ID of secret providing qcow AES key or LUKS passphrase" },
    { "encryption", "<bool (on/off)>",
      "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
    { "extended_l2", "<bool (on/off)>", "Extended L2 tables" },
    { "lazy_refcounts", "<bool (on/off)>", "Postpone refcount updates" },
    { "preallocation", "<str>", PREALLOC_HELP "off, metadata, falloc, full)" },
    { "refcount_bits", "<num>", "Width of a reference count entry in bits" },
    { "size", "<size>", "Virtual disk size" },
    { NULL, NULL, NULL },
};

/* Amend takes some of create's options and the LUKS keyslot ones. */
static const struct option_help qcow2_amend_only[] = {
    { "encrypt.keyslot", "<num>", "Select a single keyslot to modify explicitly" },
    { "encrypt.new-secret", "<str>",
      "New secret to set in the matching keyslots. Empty string to erase" },
    { "encrypt.old-secret", "<str>", "Select all keyslots that match this password" },
    { "encrypt.state", "<str>", "Select new state of affected keyslots (active/inactive)" },
    { NULL, NULL, NULL },
};

static const char *const qcow2_amend_names[] = {
    "backing_file", "backing_fmt", "compat", "data_file", "data_file_raw", "encrypt.iter-time",
    "encrypt.keyslot", "encrypt.new-secret", "encrypt.old-secret", "encrypt.state",
    "lazy_refcounts", "refcount_bits", "size", NULL,
};

/* Formats QEMU reads but never writes: its drivers have no create or
 * amend, which is what qemu-img says of them (we read none of them). */
static bool qemu_read_only_format(const char *format)
{
    return !strcmp(format, "bochs") || !strcmp(format, "cloop") || !strcmp(format, "dmg");
}

static void print_option(const struct option_help *o)
{
    char left[64];
    snprintf(left, sizeof(left), "%s=%s", o->name, o->type);
    printf("  %-22s - %s\n", left, o->help);
}

static const struct option_help *find(const struct option_help *list, const char *name)
{
    for (; list->name; list++) {
        if (!strcmp(list->name, name)) {
            return list;
        }
    }
    return NULL;
}

static bool listed(const struct option_help *list, const char *name)
{
    return find(list, name) != NULL;
}

/* Both lists are sorted by name; on a name in both, the format's entry is
 * the one QEMU keeps (qemu_opts_append). */
static void print_merged(const struct option_help *fmt, const struct option_help *proto)
{
    while (fmt->name || proto->name) {
        if (proto->name && listed(fmt, proto->name)) {
            proto++;
        } else if (!proto->name || (fmt->name && strcmp(fmt->name, proto->name) < 0)) {
            print_option(fmt++);
        } else {
            print_option(proto++);
        }
    }
}

int print_create_options_help(const char *format, const char *filename)
{
    const char *name = format ? format : "raw";
    const struct option_help *opts = !strcmp(name, "qcow2") ? qcow2_options
                                     : !strcmp(name, "raw") ? raw_options : NULL;
    if (!opts) {
        report(qemu_read_only_format(name) ? "Format driver '%s' does not support image creation"
                                  : "Unknown file format '%s'", name);
        return EXIT_ERR;
    }
    if (filename) {
        printf("Supported options:\n");
        print_merged(opts, file_options);
        return EXIT_OK;
    }
    printf("Supported %s options:\n", name);
    for (; opts->name; opts++) {
        print_option(opts);
    }
    printf("\nThe protocol level may support further options.\n"
           "Specify the target filename to include those options.\n");
    return EXIT_OK;
}

int print_amend_options_help(const char *format)
{
    if (strcmp(format, "qcow2") != 0) {
        report(format_known(format) || qemu_read_only_format(format)
               ? "Format driver '%s' does not support option amendment"
                                    : "Unknown file format '%s'", format);
        return EXIT_ERR;
    }
    printf("Amend options for 'qcow2':\n");
    for (int i = 0; qcow2_amend_names[i]; i++) {
        const struct option_help *o = find(qcow2_options, qcow2_amend_names[i]);
        print_option(o ? o : find(qcow2_amend_only, qcow2_amend_names[i]));
    }
    return EXIT_OK;
}
