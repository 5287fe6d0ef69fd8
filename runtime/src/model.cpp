// The graph executor: ops in file order over activations in reused buffers.
//
// Memory: for each input size a plan assigns every activation a buffer from a pool, an activation's
// buffer going back to the pool after its last reader, so that a forward holds a few activations, not
// all of them; the buffers persist across runs (no allocation per call once a size has been seen).
// A concat whose inputs are each written only for it gets them written in place: their producers write
// their channel slices of the concat's buffer (Op::writes_slices), and the concat copies nothing.
#include "model.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "ops/ops.h"
#include "parallel.h"

namespace bnext {

struct Model::Step {
  std::unique_ptr<Op> op;
  std::string name, kind;
  std::vector<int> inputs;
  int output = 0;
  std::vector<int> sinks;  // the packed edges this step's output is packed into
  int packed_input = -1;   // the packed edge this step reads instead of its input's floats, or -1
};

struct Model::Plan {
  int64_t n = -1, h = -1, w = -1;
  std::vector<Shape> shapes;            // per value
  std::vector<int> buffer;              // per value: its buffer (for a slice: its concat's)
  std::vector<int64_t> channel_offset;  // per value: where its channels start in that buffer's pixels
  std::vector<int64_t> pixel_stride;    // per value
  std::vector<int64_t> capacity;        // per buffer, in floats
};

namespace {

int64_t whole(const json::Value& object, const char* key, int64_t min, int64_t max, const std::string& where) {
  const json::Value* value = object.find(key);
  require(value != nullptr && value->is_number() && value->number() >= double(min) && value->number() <= double(max) &&
              value->number() == static_cast<double>(static_cast<int64_t>(value->number())),
          where + ": \"" + key + "\" must be a whole number in [" + std::to_string(min) + ", " + std::to_string(max) +
              "]; export the model again with `bnext export`");
  return static_cast<int64_t>(value->number());
}

const std::string& name_of(const json::Value& object, const char* key, const std::string& where) {
  const json::Value* value = object.find(key);
  require(value != nullptr && value->is_string() && !value->string().empty(),
          where + ": \"" + key + "\" must be a non-empty string; export the model again with `bnext export`");
  return value->string();
}

}  // namespace

Model::Model(std::unique_ptr<BnxFile> file, KernelPath path)
    : file_(std::move(file)), path_(path), scratch_(std::make_unique<ConvScratch>()) {
  const json::Value& header = file_->header;
  const json::Value* format = header.find("format");
  require(format != nullptr && format->is_string() && format->string() == "bnext-packed",
          "the file is a .bnx container but not a bnext packed model (format is not \"bnext-packed\")");
  const json::Value* card = header.find("card");
  card_json_ = card != nullptr && card->is_object() ? json::dump(*card) : "{}";
  const json::Value* graph = header.find("graph");
  require(graph != nullptr && graph->is_object(), "the file has no graph object; export it again with `bnext export`");
  parse_graph(*graph);
  // Checks the graph end to end at the card's size: every op's shapes fit, and the output has `classes`
  // channels (one row of logits per image for a classifier).
  const Plan& plan = plan_for(1, height_, width_);
  require(plan.shapes[output_].c == classes_, "the graph's output does not have " + std::to_string(classes_) +
                                                  " channels (\"classes\"); export the model again");
}

Model::~Model() = default;

void Model::parse_graph(const json::Value& graph) {
  const json::Value* input = graph.find("input");
  require(input != nullptr && input->is_object(), "graph: \"input\" must be an object");
  const std::string& input_name = name_of(*input, "name", "graph.input");
  in_channels_ = whole(*input, "channels", 1, 4096, "graph.input");
  height_ = whole(*input, "height", 1, 16384, "graph.input");
  width_ = whole(*input, "width", 1, 16384, "graph.input");
  multiple_ = whole(*input, "multiple", 1, 4096, "graph.input");
  require(height_ % multiple_ == 0 && width_ % multiple_ == 0,
          "graph.input: the size is not a multiple of \"multiple\"");
  classes_ = whole(graph, "classes", 1, 1 << 24, "graph");
  const json::Value* ops = graph.find("ops");
  require(ops != nullptr && ops->is_array() && !ops->array().empty() && ops->array().size() <= 100000,
          "graph: \"ops\" must be a non-empty array");
  std::map<std::string, int> values{{input_name, 0}};
  for (size_t index = 0; index < ops->array().size(); ++index) {
    const json::Value& entry = ops->array()[index];
    const std::string where = "graph op " + std::to_string(index);
    OpReader reader(entry, *file_, where);
    const json::Value* inputs = entry.find("inputs");
    require(inputs != nullptr, where + ": \"inputs\" is missing");
    Step step;
    std::vector<std::string> names;
    step.op = make_op(reader, *inputs, names, path_);
    step.kind = reader.kind();
    step.name = name_of(entry, "output", where);
    for (const auto& name : names) {
      const auto found = values.find(name);
      require(found != values.end(), where + " reads \"" + name + "\", which no earlier op writes");
      step.inputs.push_back(found->second);
    }
    require(!values.count(step.name), where + " writes \"" + step.name + "\" a second time");
    step.output = static_cast<int>(values.size());
    values[step.name] = step.output;
    steps_.push_back(std::move(step));
  }
  values_ = static_cast<int>(values.size());
  find_packed_edges();
  const auto found = values.find(name_of(graph, "output", "graph"));
  require(found != values.end() && found->second != 0, "graph: \"output\" names no op's output");
  output_ = found->second;
}

// A packed edge per binary conv whose input an op writes that can pack it (Op::emits_signs): that op packs the
// pixels it writes, while they are in cache, and the conv takes the bits (an input read by two binary convs,
// as BNext's FFN pairs are, gets two edges, one per conv's input shift). bnext_tiny at 224 px, batch 1, 1
// thread, AVX2 EPYC: see benchmarks/results/runtime_ab_avx2.json.
void Model::find_packed_edges() {
  std::vector<int> producer(values_, -1);
  for (size_t i = 0; i < steps_.size(); ++i) producer[steps_[i].output] = static_cast<int>(i);
  for (Step& step : steps_) {
    if (step.op->sign_reader() == nullptr) continue;
    const int from = producer[step.inputs[0]];
    if (from < 0 || !steps_[from].op->emits_signs()) continue;
    step.packed_input = static_cast<int>(edges_.size());
    steps_[from].sinks.push_back(step.packed_input);
    edges_.push_back({step.op->sign_reader(), {}});
  }
}

void Model::set_threads(int threads) {
  require(threads >= 1 && threads <= 1024, "threads must be in [1, 1024], got " + std::to_string(threads));
  threads_ = threads;
}

void Model::check_input(int64_t n, int64_t c, int64_t h, int64_t w) const {
  require(n >= 0 && n <= (1 << 20), "the batch size must be in [0, 2^20], got " + std::to_string(n));
  require(c == in_channels_, "the model takes " + std::to_string(in_channels_) + "-channel images (NCHW), got " +
                                 std::to_string(c) + " channels");
  const int64_t suggestion = std::max<int64_t>(multiple_, (w + multiple_ / 2) / multiple_ * multiple_);
  require(h >= 1 && w >= 1 && h <= 16384 && w <= 16384 && h % multiple_ == 0 && w % multiple_ == 0,
          "the model needs image height and width that are positive multiples of " + std::to_string(multiple_) +
              " (its total stride), got " + std::to_string(h) + "x" + std::to_string(w) +
              ": resize the images (e.g. to " + std::to_string(suggestion) + "x" + std::to_string(suggestion) + ")");
}

const Model::Plan& Model::plan_for(int64_t n, int64_t h, int64_t w) {
  if (plan_ && plan_->n == n && plan_->h == h && plan_->w == w) return *plan_;
  auto plan = std::make_unique<Plan>();
  plan->n = n;
  plan->h = h;
  plan->w = w;
  plan->shapes.assign(values_, Shape{});
  plan->shapes[0] = {n, h, w, in_channels_};
  for (const Step& step : steps_) {
    std::vector<Shape> in;
    for (const int v : step.inputs) in.push_back(plan->shapes[v]);
    try {
      plan->shapes[step.output] = step.op->infer(in);
    } catch (const Error& error) {
      throw Error(step.name + ": " + error.what());
    }
    const Shape& s = plan->shapes[step.output];
    require(s.numel() <= (int64_t{1} << 33), step.name + ": the activation exceeds 2^33 values; use smaller inputs");
  }
  // Readers per value, and the concats whose inputs can be written in place.
  const int steps = static_cast<int>(steps_.size());
  std::vector<int> last_use(values_, -1), readers(values_, 0), producer(values_, -1), owner(values_, -1);
  for (int i = 0; i < steps; ++i) {
    producer[steps_[i].output] = i;
    for (const int v : steps_[i].inputs) {
      last_use[v] = i;
      ++readers[v];
    }
  }
  last_use[output_] = steps;
  plan->channel_offset.assign(values_, 0);
  plan->pixel_stride.assign(values_, 0);
  for (int v = 0; v < values_; ++v) plan->pixel_stride[v] = plan->shapes[v].c;
  for (int i = 0; i < steps; ++i) {
    const Step& step = steps_[i];
    if (step.kind != "concat") continue;
    const bool in_place = std::all_of(step.inputs.begin(), step.inputs.end(), [&](int v) {
      return v != 0 && v != output_ && readers[v] == 1 && owner[v] < 0 && steps_[producer[v]].op->writes_slices();
    });
    if (!in_place) continue;
    std::vector<int> distinct(step.inputs);
    std::sort(distinct.begin(), distinct.end());
    if (std::adjacent_find(distinct.begin(), distinct.end()) != distinct.end()) continue;
    int64_t offset = 0;
    for (const int v : step.inputs) {
      owner[v] = step.output;
      plan->channel_offset[v] = offset;
      plan->pixel_stride[v] = plan->shapes[step.output].c;
      offset += plan->shapes[v].c;
    }
  }
  // Buffers: a value's buffer is taken when the first op writing into it runs, and given back after its
  // last reader (a slice's reads count for its concat).
  std::vector<int> first_write(values_, steps), release(values_, -1);
  first_write[0] = -1;
  for (int v = 1; v < values_; ++v) {
    const int target = owner[v] >= 0 ? owner[v] : v;
    first_write[target] = std::min(first_write[target], producer[v]);
  }
  for (int v = 0; v < values_; ++v) release[v] = owner[v] >= 0 ? -1 : last_use[v];
  plan->buffer.assign(values_, -1);
  std::vector<int> free_buffers;
  auto take = [&](int v) {
    const int64_t need = plan->shapes[v].numel();
    auto best = free_buffers.end();
    for (auto it = free_buffers.begin(); it != free_buffers.end(); ++it) {  // the smallest that fits, else the largest
      const int64_t have = plan->capacity[*it];
      if (best == free_buffers.end()) {
        best = it;
        continue;
      }
      const int64_t current = plan->capacity[*best];
      if ((have >= need && (current < need || have < current)) || (current < need && have > current)) best = it;
    }
    int b;
    if (best == free_buffers.end()) {
      b = static_cast<int>(plan->capacity.size());
      plan->capacity.push_back(0);
    } else {
      b = *best;
      free_buffers.erase(best);
    }
    plan->capacity[b] = std::max(plan->capacity[b], need);
    plan->buffer[v] = b;
  };
  take(0);
  for (int i = 0; i < steps; ++i) {
    for (int v = 1; v < values_; ++v)
      if (first_write[v] == i && owner[v] < 0) take(v);
    for (int v = 0; v < values_; ++v)
      if (release[v] == i && plan->buffer[v] >= 0) free_buffers.push_back(plan->buffer[v]);
  }
  for (int v = 0; v < values_; ++v)
    if (owner[v] >= 0) plan->buffer[v] = plan->buffer[owner[v]];
  // Each packed edge's words, the words past the pixels zero (written here, never by the packing ops).
  for (const Step& step : steps_)
    if (step.packed_input >= 0) {
      PackedEdge& edge = edges_[step.packed_input];
      edge.words.assign(edge.conv->packed_words(plan->shapes[step.inputs[0]].pixels()), 0);
    }
  if (buffers_.size() < plan->capacity.size()) buffers_.resize(plan->capacity.size());
  for (size_t b = 0; b < plan->capacity.size(); ++b)
    if (static_cast<int64_t>(buffers_[b].size()) < plan->capacity[b]) buffers_[b].resize(plan->capacity[b]);
  plan_ = std::move(plan);
  return *plan_;
}

int64_t Model::output_size(int64_t h, int64_t w) {
  check_input(1, in_channels_, h, w);
  // A value's per-image size does not depend on the batch: the cached plan of any batch at this size
  // answers, so that bnext_model_run's check does not replan (twice) on every call with a batch other than 1.
  const Plan& plan = plan_ && plan_->h == h && plan_->w == w ? *plan_ : plan_for(1, h, w);
  const Shape& s = plan.shapes[output_];
  return s.h * s.w * s.c;
}

void Model::run(const float* images, int64_t n, int64_t c, int64_t h, int64_t w, float* out) {
  check_input(n, c, h, w);
  if (n == 0) return;
  require(images != nullptr && out != nullptr, "images and the output must not be NULL");
  const Plan& plan = plan_for(n, h, w);
  // NCHW -> NHWC into the input's buffer, one sample's run of pixels at a time (the previous loop divided per
  // pixel to find its sample). With 3-channel images spelled out, the time of a bnext_tiny run outside its ops
  // (this copy, the logits' copy, the call) went 0.33 -> 0.17 ms at 224 px (interleaved A/B in one process,
  // 1 thread, AVX2 EPYC, medians of 5 runs); other channel counts take the previous loop (no faster spelled so).
  float* input = buffers_[plan.buffer[0]].data();
  const int64_t pixels = h * w;
  parallel_for(0, n * pixels, 1024, threads_, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end;) {
      const int64_t sample = p / pixels, stop = std::min(end, (sample + 1) * pixels);
      const float* image = images + sample * c * pixels - sample * pixels;  // image + q: pixel q's channel 0
      if (c == 3) {
        const float *r = image + p, *g = r + pixels, *b = g + pixels;
        float* out = input + p * 3;
        for (int64_t i = 0; i < stop - p; ++i, out += 3) {
          out[0] = r[i];
          out[1] = g[i];
          out[2] = b[i];
        }
      } else {
        for (int64_t q = p; q < stop; ++q) {
          const float* source = image + q;
          for (int64_t k = 0; k < c; ++k) input[q * c + k] = source[k * pixels];
        }
      }
      p = stop;
    }
  });
  RunContext context;
  context.threads = threads_;
  context.scratch = scratch_.get();
  auto view = [&](int v) {
    return View{buffers_[plan.buffer[v]].data() + plan.channel_offset[v], plan.shapes[v], plan.pixel_stride[v]};
  };
  if (profiling_) op_times_.assign(steps_.size(), OpTime{});
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& step = steps_[i];
    std::vector<View> in;
    for (const int v : step.inputs) in.push_back(view(v));
    context.sinks.clear();
    context.packed_input = nullptr;
    if (packed_edges_) {
      for (const int edge : step.sinks) context.sinks.push_back({edges_[edge].conv, edges_[edge].words.data()});
      if (step.packed_input >= 0) context.packed_input = edges_[step.packed_input].words.data();
    }
    const auto start = std::chrono::steady_clock::now();
    step.op->run(in, view(step.output), context);
    if (profiling_) {
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      op_times_[i] = {step.name, step.kind, took.count()};
    }
  }
  const View result = view(output_);
  std::copy_n(result.data, result.shape.numel(), out);
}

}  // namespace bnext
