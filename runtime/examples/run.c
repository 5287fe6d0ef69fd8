/* A C program using bnext-runtime: loads a .bnx, runs one batch of constant images, prints the top class.
 *   bnext_run_c model.bnx [batch]
 * (built with the tests: it proves the header compiles as C and the library links from C.) */
#include <stdio.h>
#include <stdlib.h>

#include "bnext_runtime.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.bnx [BATCH]\n", argv[0]);
    return 2;
  }
  const int64_t n = argc > 2 ? atoll(argv[2]) : 1;
  bnext_model* model = bnext_model_load_file(argv[1], NULL);
  if (model == NULL) {
    fprintf(stderr, "error: %s\n", bnext_last_error());
    return 1;
  }
  int64_t c, h, w;
  bnext_model_input_shape(model, &c, &h, &w);
  const int64_t classes = bnext_model_num_classes(model);
  float* images = calloc((size_t)(n * c * h * w), sizeof(float));
  float* logits = malloc((size_t)(n * classes) * sizeof(float));
  int status = bnext_model_run(model, images, n, c, h, w, logits);
  if (status != BNEXT_OK) {
    fprintf(stderr, "error: %s\n", bnext_last_error());
  } else {
    for (int64_t i = 0; i < n; ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < classes; ++k)
        if (logits[i * classes + k] > logits[i * classes + best]) best = k;
      printf("image %lld: class %lld (%s path)\n", (long long)i, (long long)best, bnext_model_kernel_path(model));
    }
  }
  free(images);
  free(logits);
  bnext_model_free(model);
  return status == BNEXT_OK ? 0 : 1;
}
