/* Portable context switch on makecontext/swapcontext (configure
 * --with-switch=ucontext). Slower: swapcontext saves the signal mask with a
 * system call on every switch. */
#include "chanq_config.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/switch.h"

/* makecontext passes int arguments only, so pointers travel in halves. */
static void
switch_ucontext_entry(unsigned int fn_hi, unsigned int fn_lo, unsigned int arg_hi,
                      unsigned int arg_lo)
{
    uintptr_t fn = ((uintptr_t)fn_hi << 16 << 16) | fn_lo;
    uintptr_t arg = ((uintptr_t)arg_hi << 16 << 16) | arg_lo;
    ((switch_entry_fn *)fn)((void *)arg);
    abort(); /* entry functions never return */
}

void
switch_init(struct switch_ctx *ctx, void *stack_lo, size_t size, switch_entry_fn *entry,
            void *arg)
{
    if (getcontext(&ctx->uc) != 0)
        abort();
    ctx->uc.uc_stack.ss_sp = stack_lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    uintptr_t fn = (uintptr_t)entry, a = (uintptr_t)arg;
    makecontext(&ctx->uc, (void (*)(void))switch_ucontext_entry, 4,
                (unsigned int)(fn >> 16 >> 16), (unsigned int)fn, (unsigned int)(a >> 16 >> 16),
                (unsigned int)a);
}

void
switch_jump(struct switch_ctx *from, struct switch_ctx *to)
{
    if (swapcontext(&from->uc, &to->uc) != 0)
        abort();
}

void *
switch_fault_sp(void *uctx)
{
    (void)uctx;
    return NULL; /* not portable */
}
