// The C API (include/bnext_runtime.h): every entry point catches everything, so no C++ exception crosses
// the C boundary; the message goes to a per-thread last-error string.
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "bnext_runtime.h"
#include "bnx_file.h"
#include "model.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .bnx payload is little-endian; add byte swaps");

struct bnext_model {
  std::unique_ptr<bnext::Model> model;
  std::string kernel_path;
};

namespace {

thread_local std::string last_error;

template <typename F>
int guarded(F&& body) {
  try {
    body();
    last_error.clear();
    return BNEXT_OK;
  } catch (const std::bad_alloc&) {
    last_error = "out of memory";
  } catch (const std::exception& error) {
    last_error = error.what();
  } catch (...) {
    last_error = "unknown error";
  }
  return BNEXT_ERROR;
}

bnext_model* load(std::unique_ptr<bnext::BnxFile> file, const char* kernel_path) {
  const bnext::KernelPath path = kernel_path == nullptr || kernel_path[0] == '\0'
                                     ? bnext::best_kernel_path()
                                     : bnext::kernel_path_from_name(kernel_path);
  auto handle = std::make_unique<bnext_model>();
  handle->model = std::make_unique<bnext::Model>(std::move(file), path);
  handle->kernel_path = bnext::kernel_path_name(path);
  return handle.release();
}

bool usable(const bnext_model* model) {
  if (model != nullptr && model->model) return true;
  last_error = "the model handle is NULL (did the load fail? see bnext_last_error after loading)";
  return false;
}

}  // namespace

extern "C" {

const char* bnext_version(void) { return "0.2.0"; }
int bnext_format_version(void) { return static_cast<int>(bnext::kBnxVersion); }
const char* bnext_last_error(void) { return last_error.c_str(); }

const char* bnext_supported_kernel_paths(void) {
  static const std::string names = [] {
    std::string joined;
    for (const auto path : bnext::supported_kernel_paths()) {
      if (!joined.empty()) joined += ",";
      joined += bnext::kernel_path_name(path);
    }
    return joined;
  }();
  return names.c_str();
}

bnext_model* bnext_model_load_file(const char* path, const char* kernel_path) {
  bnext_model* model = nullptr;
  guarded([&] {
    bnext::require(path != nullptr, "the path is NULL");
    model = load(bnext::read_bnx(path), kernel_path);
  });
  return model;
}

bnext_model* bnext_model_load_buffer(const void* data, size_t size, const char* kernel_path) {
  bnext_model* model = nullptr;
  guarded([&] {
    bnext::require(data != nullptr || size == 0, "the buffer is NULL");
    const auto* bytes = static_cast<const uint8_t*>(data);
    model = load(bnext::parse_bnx(std::vector<uint8_t>(bytes, bytes + size), "the buffer"), kernel_path);
  });
  return model;
}

void bnext_model_free(bnext_model* model) { delete model; }

int bnext_model_input_shape(const bnext_model* model, int64_t* channels, int64_t* height, int64_t* width) {
  if (!usable(model)) return BNEXT_ERROR;
  if (channels) *channels = model->model->in_channels();
  if (height) *height = model->model->height();
  if (width) *width = model->model->width();
  return BNEXT_OK;
}

int64_t bnext_model_input_multiple(const bnext_model* model) { return usable(model) ? model->model->multiple() : 0; }
int64_t bnext_model_num_classes(const bnext_model* model) { return usable(model) ? model->model->classes() : 0; }
const char* bnext_model_kernel_path(const bnext_model* model) {
  return usable(model) ? model->kernel_path.c_str() : "";
}
const char* bnext_model_card_json(const bnext_model* model) {
  return usable(model) ? model->model->card_json().c_str() : "";
}

int bnext_model_set_threads(bnext_model* model, int threads) {
  if (!usable(model)) return BNEXT_ERROR;
  return guarded([&] { model->model->set_threads(threads); });
}

int bnext_model_threads(const bnext_model* model) { return usable(model) ? model->model->threads() : 0; }

int bnext_model_run(bnext_model* model, const float* images, int64_t n, int64_t c, int64_t h, int64_t w,
                    float* logits) {
  if (!usable(model)) return BNEXT_ERROR;
  return guarded([&] {
    bnext::require(model->model->output_size(h, w) == model->model->classes(),
                   "this model's output is not one row of logits per image");
    model->model->run(images, n, c, h, w, logits);
  });
}

int bnext_model_output_size(bnext_model* model, int64_t height, int64_t width, int64_t* size) {
  if (!usable(model)) return BNEXT_ERROR;
  return guarded([&] { *size = model->model->output_size(height, width); });
}

int bnext_model_run_any(bnext_model* model, const float* images, int64_t n, int64_t c, int64_t h, int64_t w,
                        float* out) {
  if (!usable(model)) return BNEXT_ERROR;
  return guarded([&] { model->model->run(images, n, c, h, w, out); });
}

int bnext_model_set_profiling(bnext_model* model, int on) {
  if (!usable(model)) return BNEXT_ERROR;
  model->model->set_profiling(on != 0);
  return BNEXT_OK;
}

int64_t bnext_model_num_ops(const bnext_model* model) {
  return usable(model) ? static_cast<int64_t>(model->model->op_times().size()) : 0;
}

int bnext_model_op_time(const bnext_model* model, int64_t index, const char** name, const char** kind,
                        double* seconds) {
  if (!usable(model)) return BNEXT_ERROR;
  return guarded([&] {
    const auto& times = model->model->op_times();
    bnext::require(index >= 0 && index < static_cast<int64_t>(times.size()), "op index out of range");
    *name = times[index].name.c_str();
    *kind = times[index].kind.c_str();
    *seconds = times[index].seconds;
  });
}

}  // extern "C"
