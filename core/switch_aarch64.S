/* AArch64 (AAPCS64) context switch: saves x19-x30 and d8-d15 (the
 * callee-saved registers) and FPCR on the current stack, swaps sp. */
        .text

/* void switch_jump(struct switch_ctx *from, struct switch_ctx *to)
 * x0 = from (its first field is the saved sp), x1 = to. */
        .globl  switch_jump
        .hidden switch_jump
        .type   switch_jump, %function
        .p2align 4
switch_jump:
        .cfi_startproc
        hint    #34                     /* bti c */
        sub     sp, sp, #0xb0
        stp     d8, d9, [sp, #0x00]
        stp     d10, d11, [sp, #0x10]
        stp     d12, d13, [sp, #0x20]
        stp     d14, d15, [sp, #0x30]
        stp     x19, x20, [sp, #0x40]
        stp     x21, x22, [sp, #0x50]
        stp     x23, x24, [sp, #0x60]
        stp     x25, x26, [sp, #0x70]
        stp     x27, x28, [sp, #0x80]
        stp     x29, x30, [sp, #0x90]
        mrs     x9, fpcr
        str     x9, [sp, #0xa0]
        mov     x9, sp
        str     x9, [x0]
        ldr     x9, [x1]
        mov     sp, x9
        ldr     x9, [sp, #0xa0]
        msr     fpcr, x9
        ldp     d8, d9, [sp, #0x00]
        ldp     d10, d11, [sp, #0x10]
        ldp     d12, d13, [sp, #0x20]
        ldp     d14, d15, [sp, #0x30]
        ldp     x19, x20, [sp, #0x40]
        ldp     x21, x22, [sp, #0x50]
        ldp     x23, x24, [sp, #0x60]
        ldp     x25, x26, [sp, #0x70]
        ldp     x27, x28, [sp, #0x80]
        ldp     x29, x30, [sp, #0x90]
        add     sp, sp, #0xb0
        ret
        .cfi_endproc
        .size   switch_jump, .-switch_jump

/* First code of a new context: switch_init left arg in x19, the entry
 * function in x20 and x29 = x30 = 0 (end of the frame chain). entry never
 * returns. */
        .globl  switch_trampoline
        .hidden switch_trampoline
        .type   switch_trampoline, %function
        .p2align 4
switch_trampoline:
        .cfi_startproc
        .cfi_undefined x30
        hint    #34                     /* bti c */
        mov     x0, x19
        blr     x20
        brk     #0
        .cfi_endproc
        .size   switch_trampoline, .-switch_trampoline

        .section .note.GNU-stack, "", %progbits
