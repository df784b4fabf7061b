/* x86-64: the initial frame switch_jump (switch_x86_64.S) pops into a new
 * context so that it "returns" into switch_trampoline. */
#include "chanq_config.h"

#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "core/switch.h"

void switch_trampoline(void);

/* Frame layout from the saved sp upwards, as switch_jump pops it:
 * [pad 8][mxcsr 4][fpcw 2][pad 2] r15 r14 r13 r12 rbx rbp [return address]. */
enum {
    FRAME_WORDS = 9,
    SLOT_MXCSR = 8, /* byte offsets */
    SLOT_FPCW = 12,
    SLOT_R13 = 4, /* word offsets */
    SLOT_R12 = 5,
    SLOT_RBP = 7,
    SLOT_RET = 8,
};

void
switch_init(struct switch_ctx *ctx, void *stack_lo, size_t size, switch_entry_fn *entry,
            void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    /* After the ret into the trampoline rsp must be 16-byte aligned, so the
     * frame starts 8 mod 16; keep 16 bytes of slack above it. */
    uint64_t *frame = (uint64_t *)(top - 16 - FRAME_WORDS * 8);
    memset(frame, 0, FRAME_WORDS * 8);
    uint32_t mxcsr = 0x1f80; /* defaults: all exceptions masked, round to nearest */
    uint16_t fpcw = 0x037f;
    memcpy((char *)frame + SLOT_MXCSR, &mxcsr, sizeof mxcsr);
    memcpy((char *)frame + SLOT_FPCW, &fpcw, sizeof fpcw);
    frame[SLOT_R12] = (uint64_t)(uintptr_t)arg;
    frame[SLOT_R13] = (uint64_t)(uintptr_t)entry;
    frame[SLOT_RBP] = 0;
    frame[SLOT_RET] = (uint64_t)(uintptr_t)switch_trampoline;
    ctx->sp = frame;
}

void *
switch_fault_sp(void *uctx)
{
    return (void *)(uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RSP];
}
