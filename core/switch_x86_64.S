/* x86-64 System V context switch: saves the callee-saved registers, MXCSR
 * and the x87 control word on the current stack, swaps stack pointers. */
        .text

/* void switch_jump(struct switch_ctx *from, struct switch_ctx *to)
 * rdi = from (its first field is the saved sp), rsi = to. */
        .globl  switch_jump
        .hidden switch_jump
        .type   switch_jump, @function
        .p2align 4
switch_jump:
        .cfi_startproc
        .byte   0xf3, 0x0f, 0x1e, 0xfa          /* endbr64 (CET) */
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        stmxcsr 8(%rsp)
        fnstcw  12(%rsp)
        movq    %rsp, (%rdi)
        movq    (%rsi), %rsp
        ldmxcsr 8(%rsp)
        fldcw   12(%rsp)
        addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   switch_jump, .-switch_jump

/* First code of a new context: switch_init left arg in r12 and the entry
 * function in r13; the stack is 16-byte aligned here. entry never returns. */
        .globl  switch_trampoline
        .hidden switch_trampoline
        .type   switch_trampoline, @function
        .p2align 4
switch_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        .byte   0xf3, 0x0f, 0x1e, 0xfa          /* endbr64 */
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   switch_trampoline, .-switch_trampoline

        .section .note.GNU-stack, "", @progbits
