// A whole packed BNext unit as one object: pack the input's signs, binary conv with its folded
// BN1 + PReLU, then the unit's tail (shortcut, Info-RCP gate, BN2, ELM product, residual).
//
// The per-unit constants (packed weights, folded norms, gate matrices) are bound once, on the first
// forward, so that a forward is one call from Python with one tensor argument instead of a conv
// module and three kernel calls converting ~25 arguments (bnext_tiny at 224 px, AVX2 EPYC, interleaved
// in one process: 29.22 -> 28.26 ms at 1 thread, 22.80 -> 21.79 ms at 2; the same outputs).

#include <torch/extension.h>

#include <utility>
#include <vector>

// bitkernels.cpp and unit_tail.cpp
torch::Tensor pack_activations(torch::Tensor x, torch::Tensor bias, int64_t path);
torch::Tensor binary_conv(torch::Tensor packed, torch::Tensor weights, torch::Tensor border_sums, int64_t channels,
                          int64_t out_channels, int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding,
                          torch::Tensor scale, torch::Tensor shift, c10::optional<torch::Tensor> slope, int64_t path);
torch::Tensor unit_tail(torch::Tensor y, torch::Tensor x, c10::optional<torch::Tensor> slope, bool pool,
                        bool gate_before_act, std::vector<torch::Tensor> gate, torch::Tensor scale,
                        torch::Tensor shift, bool elm, c10::optional<torch::Tensor> into, int64_t offset);

namespace {

struct PackedUnit {
  // The conv's arguments, as PackedBinaryConv.kernel_arguments() gives them.
  torch::Tensor input_shift, panels, border_sums;
  int64_t channels, out_channels, kernel_h, kernel_w, stride, padding;
  torch::Tensor conv_scale, conv_shift;
  c10::optional<torch::Tensor> conv_slope;
  int64_t path;
  // The tail's arguments (see unit_tail).
  c10::optional<torch::Tensor> residual_slope;
  bool pool, gate_before_act;
  std::vector<torch::Tensor> gate;
  torch::Tensor norm_scale, norm_shift;
  bool elm;

  torch::Tensor forward(const torch::Tensor& x, c10::optional<torch::Tensor> into, int64_t offset) const {
    auto y = binary_conv(pack_activations(x, input_shift, path), panels, border_sums, channels, out_channels,
                         kernel_h, kernel_w, stride, padding, conv_scale, conv_shift, conv_slope, path);
    return unit_tail(std::move(y), x, residual_slope, pool, gate_before_act, gate, norm_scale, norm_shift, elm,
                     std::move(into), offset);
  }
};

}  // namespace

void register_packed_unit(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<PackedUnit>(m, "PackedUnit", "a packed BNext unit: sign + pack, binary conv, tail, in one call")
      .def(py::init([](torch::Tensor input_shift, torch::Tensor panels, torch::Tensor border_sums, int64_t channels,
                       int64_t out_channels, int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding,
                       torch::Tensor conv_scale, torch::Tensor conv_shift, c10::optional<torch::Tensor> conv_slope,
                       int64_t path, c10::optional<torch::Tensor> residual_slope, bool pool, bool gate_before_act,
                       std::vector<torch::Tensor> gate, torch::Tensor norm_scale, torch::Tensor norm_shift,
                       bool elm) {
             return PackedUnit{input_shift, panels,     border_sums, channels,       out_channels,    kernel_h,
                               kernel_w,    stride,     padding,     conv_scale,     conv_shift,      conv_slope,
                               path,        residual_slope, pool,    gate_before_act, std::move(gate), norm_scale,
                               norm_shift,  elm};
           }),
           py::arg("input_shift"), py::arg("panels"), py::arg("border_sums"), py::arg("channels"),
           py::arg("out_channels"), py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride"), py::arg("padding"),
           py::arg("conv_scale"), py::arg("conv_shift"), py::arg("conv_slope"), py::arg("path"),
           py::arg("residual_slope"), py::arg("pool"), py::arg("gate_before_act"), py::arg("gate"),
           py::arg("norm_scale"), py::arg("norm_shift"), py::arg("elm"))
      .def("__call__", &PackedUnit::forward, py::arg("x"), py::arg("into") = py::none(), py::arg("offset") = 0);
}
