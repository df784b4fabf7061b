/* The goroutine context switch. The build picks one implementation:
 * switch_x86_64.S + switch_x86_64_frame.c, switch_aarch64.S +
 * switch_aarch64_frame.c (own assembly, callee-saved
 * registers only, no signal mask) or switch_ucontext.c (portable fallback,
 * configure --with-switch=ucontext defines CHANQ_SWITCH_UCONTEXT). */
#ifndef CHANQ_CORE_SWITCH_H
#define CHANQ_CORE_SWITCH_H

#include <stddef.h>

#if CHANQ_SWITCH_UCONTEXT
#include <ucontext.h>
/* A saved execution context: the whole ucontext (swapcontext's format). */
struct switch_ctx {
    ucontext_t uc; /* registers, stack, signal mask as swapcontext saves them */
};
#else
/* A saved execution context: the stack pointer; the callee-saved registers
 * and the FPU control words sit on the saved stack itself. */
struct switch_ctx {
    void *sp; /* top of the suspended stack; must stay the first field (asm) */
};
#endif

/* The function a new context starts in; it must never return. */
typedef void switch_entry_fn(void *arg);

/* Prepares `ctx` so that the first switch_jump to it runs entry(arg) on the
 * stack [stack_lo, stack_lo + size). */
void switch_init(struct switch_ctx *ctx, void *stack_lo, size_t size, switch_entry_fn *entry,
                 void *arg);

/* Saves the running context into `from` and resumes `to`. Returns when some
 * thread later switches back to `from`. */
void switch_jump(struct switch_ctx *from, struct switch_ctx *to);

/* The stack pointer of the context a signal interrupted (`uctx` is the
 * SA_SIGINFO handler's third argument), or NULL when unknown. */
void *switch_fault_sp(void *uctx);

#endif
