/* Replays the checked-in fuzz corpus through the libFuzzer entry point,
 * without libFuzzer, so make check keeps every seed passing. Usage:
 * replay_proto [DIR...] (default: $top_srcdir/tests/fuzz/corpus). */
#include "chanq_config.h"

#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *data = malloc(cap);
    size_t n;
    while (data && (n = fread(data + len, 1, cap - len, fp)) > 0) {
        len += n;
        if (len == cap) {
            unsigned char *bigger = realloc(data, cap * 2);
            if (!bigger) {
                free(data);
                data = NULL;
                break;
            }
            data = bigger;
            cap *= 2;
        }
    }
    fclose(fp);
    if (!data)
        return -1;
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

static int
replay_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (replay_file(path))
            rc = -1;
        (*count)++;
    }
    closedir(d);
    return rc;
}

int
main(int argc, char **argv)
{
    char def[4096];
    const char *srcdir = getenv("top_srcdir");
    snprintf(def, sizeof def, "%s/tests/fuzz/corpus", srcdir ? srcdir : ".");
    int count = 0, rc = 0;
    if (argc < 2) {
        rc = replay_dir(def, &count);
    } else {
        for (int i = 1; i < argc; i++)
            rc |= replay_dir(argv[i], &count);
    }
    printf("replay_proto: %d corpus inputs replayed\n", count);
    if (count == 0)
        return 1;
    return rc ? 1 : 0;
}
