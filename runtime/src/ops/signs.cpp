// emit_signs: how an op packs the pixels it has just written for the binary convs that read them (op.h).
#include "ops/op.h"

namespace bnext {

void emit_signs(const RunContext& context, const View& out, int64_t begin, int64_t end) {
  const int64_t channels = out.shape.c, stride = out.pixel_stride;
  for (const SignSink& sink : context.sinks) {
    const int64_t words = sink.conv->pixel_words();
    if (stride == channels) {
      sink.conv->pack(out.data + begin * channels, end - begin, sink.words + begin * words);
    } else {  // a channel slice of a wider tensor: pixel by pixel
      for (int64_t p = begin; p < end; ++p) sink.conv->pack(out.data + p * stride, 1, sink.words + p * words);
    }
  }
}

}  // namespace bnext
