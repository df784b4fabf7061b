/* The libFuzzer entry point, shared by the libFuzzer build (make fuzz)
 * and the corpus replay driver that make check runs. */
#ifndef CHANQ_TESTS_FUZZ_FUZZ_H
#define CHANQ_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Runs the proto codec over one input; aborts when an invariant breaks. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
