/* bnext-runtime: run a .bnx packed 1-bit model (bnext export) from C, C++ or any FFI.
 *
 *   bnext_model* m = bnext_model_load_file("model.bnx", NULL);
 *   if (!m) { fprintf(stderr, "%s\n", bnext_last_error()); return 1; }
 *   int64_t c, h, w; bnext_model_input_shape(m, &c, &h, &w);
 *   float* logits = malloc(n * bnext_model_num_classes(m) * sizeof(float));
 *   if (bnext_model_run(m, images, n, c, h, w, logits) != BNEXT_OK) { ... bnext_last_error() ... }
 *   bnext_model_free(m);
 *
 * Every function returns an error status (or NULL) instead of throwing or aborting; bnext_last_error()
 * then holds a message naming the problem and the fix, for the calling thread. A model may be used by
 * one thread at a time (runs reuse its scratch memory); load one per thread to run in parallel.
 */
#ifndef BNEXT_RUNTIME_H
#define BNEXT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define BNEXT_API __declspec(dllexport)
#else
#define BNEXT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bnext_model bnext_model;

enum bnext_status { BNEXT_OK = 0, BNEXT_ERROR = 1 };

/* The runtime's version ("0.2.0") and the .bnx format version it reads (2). */
BNEXT_API const char* bnext_version(void);
BNEXT_API int bnext_format_version(void);

/* The message of the last failed call on this thread ("" when none failed). Valid until the next call. */
BNEXT_API const char* bnext_last_error(void);

/* Kernel paths this CPU and build can run, slowest first, comma-separated: "portable,avx2,avx512bw,avx512". */
BNEXT_API const char* bnext_supported_kernel_paths(void);

/* Load a model. kernel_path: NULL (or "") for the fastest path this CPU runs, or one of
 * bnext_supported_kernel_paths(). The file or buffer is checked whole before use (checksum, every size,
 * offset, shape and count); the buffer is copied. NULL on error. */
BNEXT_API bnext_model* bnext_model_load_file(const char* path, const char* kernel_path);
BNEXT_API bnext_model* bnext_model_load_buffer(const void* data, size_t size, const char* kernel_path);
BNEXT_API void bnext_model_free(bnext_model* model);

/* The input the model expects: channels and the default (card) height and width. Other sizes run too
 * when they are positive multiples of bnext_model_input_multiple(). */
BNEXT_API int bnext_model_input_shape(const bnext_model* model, int64_t* channels, int64_t* height, int64_t* width);
BNEXT_API int64_t bnext_model_input_multiple(const bnext_model* model);
BNEXT_API int64_t bnext_model_num_classes(const bnext_model* model);
/* The kernel path the model runs ("avx2", ...) and its model card as JSON (name, classes, mean, std,
 * input size). Owned by the model. */
BNEXT_API const char* bnext_model_kernel_path(const bnext_model* model);
BNEXT_API const char* bnext_model_card_json(const bnext_model* model);

/* Threads used by bnext_model_run (default 1; at least 1). */
BNEXT_API int bnext_model_set_threads(bnext_model* model, int threads);
BNEXT_API int bnext_model_threads(const bnext_model* model);

/* images: float32 NCHW [n][c][h][w], already normalized with the card's mean / std. logits: room for
 * n * bnext_model_num_classes(model) floats. n = 0 is valid (nothing written). A NaN pixel gives NaN
 * logits for its image. */
BNEXT_API int bnext_model_run(bnext_model* model, const float* images, int64_t n, int64_t c, int64_t h, int64_t w,
                              float* logits);

/* Models whose graph ends in something other than logits (single layers, for benchmarks): values per
 * image for an input size, and a run writing n * that many floats, NHWC per image. */
BNEXT_API int bnext_model_output_size(bnext_model* model, int64_t height, int64_t width, int64_t* size);
BNEXT_API int bnext_model_run_any(bnext_model* model, const float* images, int64_t n, int64_t c, int64_t h, int64_t w,
                                  float* out);

/* Per-op wall times: with profiling on, each run records every op's time; read them by index
 * (0 .. bnext_model_num_ops() - 1, in run order) after a run. */
BNEXT_API int bnext_model_set_profiling(bnext_model* model, int on);
BNEXT_API int64_t bnext_model_num_ops(const bnext_model* model);
BNEXT_API int bnext_model_op_time(const bnext_model* model, int64_t index, const char** name, const char** kind,
                                  double* seconds);

#ifdef __cplusplus
}
#endif

#endif /* BNEXT_RUNTIME_H */
