/* traceparent syntax (traceparent.h). */
#include "chanq_config.h"

#include "proto/traceparent.h"

#include <string.h>

enum { TP_LEN = 55 }; /* "00-" + 32 + "-" + 16 + "-" + 2 */

/* n lowercase hex digits at s; *zero tells whether they are all '0'. */
static bool
lower_hex(const char *s, size_t n, bool *zero)
{
    *zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        *zero &= c == '0';
    }
    return true;
}

static bool
fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return false;
}

bool
traceparent_valid(const char *s, size_t len, const char **why)
{
    bool zero;
    if (len < TP_LEN)
        return fail(why, "shorter than 55 characters");
    if (len > TRACEPARENT_MAX)
        return fail(why, "longer than 256 characters");
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return fail(why, "not four '-'-separated parts");
    if (!lower_hex(s, 2, &zero) || memcmp(s, "ff", 2) == 0)
        return fail(why, "version is not two lowercase hex digits other than ff");
    if (!lower_hex(s + 3, 32, &zero) || zero)
        return fail(why, "trace-id is not 32 lowercase hex digits, not all zero");
    if (!lower_hex(s + 36, 16, &zero) || zero)
        return fail(why, "parent-id is not 16 lowercase hex digits, not all zero");
    if (!lower_hex(s + 53, 2, &zero))
        return fail(why, "trace-flags is not two lowercase hex digits");
    if (len > TP_LEN && (memcmp(s, "00", 2) == 0 || s[TP_LEN] != '-'))
        return fail(why,
                    "version 00 has nothing after trace-flags; a later version only after a '-'");
    return true;
}
