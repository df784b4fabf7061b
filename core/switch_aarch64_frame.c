/* AArch64: the initial frame switch_jump (switch_aarch64.S) pops into a new
 * context so that it "returns" into switch_trampoline. */
#include "chanq_config.h"

#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "core/switch.h"

void switch_trampoline(void);

/* Frame layout from the saved sp upwards (0xb0 bytes, as switch_jump pops
 * it): d8-d15, x19-x28, x29, x30, fpcr, pad. Word offsets: */
enum {
    FRAME_WORDS = 22,
    SLOT_X19 = 8,
    SLOT_X20 = 9,
    SLOT_X29 = 18,
    SLOT_X30 = 19,
    SLOT_FPCR = 20,
};

void
switch_init(struct switch_ctx *ctx, void *stack_lo, size_t size, switch_entry_fn *entry,
            void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 16 - FRAME_WORDS * 8); /* sp stays 16-aligned */
    memset(frame, 0, FRAME_WORDS * 8);
    frame[SLOT_X19] = (uint64_t)(uintptr_t)arg;
    frame[SLOT_X20] = (uint64_t)(uintptr_t)entry;
    frame[SLOT_X29] = 0;
    frame[SLOT_X30] = (uint64_t)(uintptr_t)switch_trampoline;
    frame[SLOT_FPCR] = 0; /* IEEE defaults: round to nearest, no traps */
    ctx->sp = frame;
}

void *
switch_fault_sp(void *uctx)
{
    return (void *)(uintptr_t)((ucontext_t *)uctx)->uc_mcontext.sp;
}
