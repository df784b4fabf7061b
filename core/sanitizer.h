/* Fiber annotations for AddressSanitizer and ThreadSanitizer around every
 * goroutine switch. Selected by CHANQ_ASAN / CHANQ_TSAN (chanq_config.h);
 * without a sanitizer every function here is an empty inline. */
#ifndef CHANQ_CORE_SANITIZER_H
#define CHANQ_CORE_SANITIZER_H

#include <stdbool.h>
#include <stddef.h>

#if CHANQ_ASAN
#include <sanitizer/common_interface_defs.h>

/* Before switching to the stack [bottom, bottom+size): `fake` saves the
 * current fiber's fake stack, NULL when the current fiber is dying. */
static inline void
san_start_switch(void **fake, const void *bottom, size_t size)
{
    __sanitizer_start_switch_fiber(fake, bottom, size);
}

/* First thing on the new stack: `fake` is what this fiber saved when it left
 * (NULL on its first run); reports the previous stack's bounds. */
static inline void
san_finish_switch(void *fake, const void **old_bottom, size_t *old_size)
{
    __sanitizer_finish_switch_fiber(fake, old_bottom, old_size);
}
#else
static inline void
san_start_switch(void **fake, const void *bottom, size_t size)
{
    (void)fake, (void)bottom, (void)size;
}

static inline void
san_finish_switch(void *fake, const void **old_bottom, size_t *old_size)
{
    (void)fake, (void)old_bottom, (void)old_size;
}
#endif

#if CHANQ_TSAN
#include <sanitizer/tsan_interface.h>

/* TSan's view of one goroutine (a fiber); created at spawn, destroyed from
 * the scheduler stack after the goroutine's last switch. */
static inline void *
san_fiber_create(void)
{
    return __tsan_create_fiber(0);
}

static inline void
san_fiber_destroy(void *fiber)
{
    __tsan_destroy_fiber(fiber);
}

static inline void *
san_fiber_current(void)
{
    return __tsan_get_current_fiber();
}

/* Just before switch_jump; flag 0 makes the switch a happens-before edge. */
static inline void
san_fiber_switch(void *fiber)
{
    __tsan_switch_to_fiber(fiber, 0);
}

static inline void
san_fiber_name(void *fiber, const char *name)
{
    __tsan_set_fiber_name(fiber, name);
}
#else
static inline void *
san_fiber_create(void)
{
    return NULL;
}

static inline void
san_fiber_destroy(void *fiber)
{
    (void)fiber;
}

static inline void *
san_fiber_current(void)
{
    return NULL;
}

static inline void
san_fiber_switch(void *fiber)
{
    (void)fiber;
}

static inline void
san_fiber_name(void *fiber, const char *name)
{
    (void)fiber, (void)name;
}
#endif

/* 1 in a sanitizer build (tests use smaller counts). */
#if CHANQ_ASAN || CHANQ_TSAN
#define SAN_ENABLED 1
#else
#define SAN_ENABLED 0
#endif

#endif
