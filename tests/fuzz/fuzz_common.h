/*  fuzz_common.h - what every botmesh fuzz target shares.

    Each target defines LLVMFuzzerTestOneInput and includes this header
    last.  Built with -DBM_FUZZING (tests/fuzz/CMakeLists.txt, BM_FUZZ=ON,
    clang) it is a libFuzzer target: libFuzzer brings main ().  Built
    without it (any compiler, every build), this header adds a main () that
    replays every file of the directories (or files) named on the command
    line, so the checked-in corpus runs as an ordinary CTest, under ASan
    and UBSan too (libzmq's tests/test_bind_null_fuzzer.cpp does the same).

    FUZZ_CHECK states a property of the code under test.  It stays on in
    release builds (assert would vanish under NDEBUG) and aborts, which
    libFuzzer reports as a crash and saves the input.  */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond) do { if (!(cond)) { \
    fprintf (stderr, "\nFUZZ CHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    abort (); } } while (0)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#ifdef JANSSON_H
//  JSON equality.  json_equal looks object keys up as C strings, so two
//  equal objects whose keys hold NUL bytes ("a\u0000b") compare unequal:
//  then compare their canonical text instead.
static inline bool
fuzz_json_same (const json_t *a, const json_t *b)
{
    if (json_equal (a, b))
        return true;
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY;
    char *ta = json_dumps (a, flags);
    char *tb = json_dumps (b, flags);
    bool same = ta && tb && strcmp (ta, tb) == 0;
    free (ta);
    free (tb);
    return same;
}
#endif

#ifndef BM_FUZZING
//  Replay one file; returns 0, or -1 if it cannot be read.
static int
s_fuzz_replay_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return -1;
    uint8_t *data = NULL;
    size_t size = 0, capacity = 0;
    while (1) {
        if (size == capacity) {
            capacity = capacity? capacity * 2: 4096;
            uint8_t *bigger = (uint8_t *) realloc (data, capacity);
            if (!bigger) {
                free (data);
                fclose (file);
                return -1;
            }
            data = bigger;
        }
        size_t got = fread (data + size, 1, capacity - size, file);
        if (got == 0)
            break;
        size += got;
    }
    fclose (file);
    //  Exactly size bytes, like libFuzzer: ASan sees any read past them.
    uint8_t *exact = (uint8_t *) malloc (size? size: 1);
    if (size)
        memcpy (exact, data, size);
    free (data);
    LLVMFuzzerTestOneInput (exact, size);
    free (exact);
    return 0;
}

int
main (int argc, char *argv [])
{
    int count = 0;
    const char *name = strrchr (argv [0], '/')? strrchr (argv [0], '/') + 1: argv [0];
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir (argv [i]);
        if (!dir) {
            if (s_fuzz_replay_file (argv [i])) {
                fprintf (stderr, "%s: cannot read %s\n", name, argv [i]);
                return 1;
            }
            count++;
            continue;
        }
        struct dirent *entry;
        while ((entry = readdir (dir))) {
            if (entry->d_name [0] == '.')
                continue;
            char path [4096];
            snprintf (path, sizeof path, "%s/%s", argv [i], entry->d_name);
            if (s_fuzz_replay_file (path)) {
                fprintf (stderr, "%s: cannot read %s\n", name, path);
                closedir (dir);
                return 1;
            }
            count++;
        }
        closedir (dir);
    }
    printf ("%s: replayed %d inputs, every property held\n", name, count);
    //  An empty corpus proves nothing: fail rather than pass silently.
    return count > 0? 0: 1;
}
#endif

#endif
