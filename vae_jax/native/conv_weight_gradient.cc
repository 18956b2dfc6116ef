// The weight gradient of a strided 2-D convolution, read straight from NHWC activations:
//
//   dw[kh, kw, c, o] = sum over n, i, j of x[n, s*i + kh - ph, s*j + kw - pw, c] * g[n, i, j, o]
//
// x [N, H, W, C] and g [N, OH, OW, O] row-major (XLA's default layouts), dw [KH, KW, C, O];
// terms whose index falls outside x (in the padding) contribute nothing. XLA:CPU computes this
// as a convolution that reads x transposed to batch-minor order, and writes that transposed
// copy first; here each
// (tap, 8 input channels, 32 output channels) block of dw is accumulated in 16 AVX-512
// registers while the kernel walks the pixels of a group of images held in cache: per pixel,
// two vector loads of g, eight broadcasts of x and sixteen fused multiply-adds. It is written
// for AVX-512 (`VaeJaxHasAvx512`: vae_jax uses it only there; with 16-float vectors split in
// two, AVX2's 16 registers could not hold the block).
//
// Deterministic: the images are split into fixed groups (by their size and the batch's, never by
// thread count), each group's sum goes to its own buffer, and the buffers are added in group
// order, so the result is the same bit for bit whichever threads of XLA's pool run which groups.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float f32x16 __attribute__((vector_size(64), aligned(4)));

constexpr int kChannels = 8;   // input channels per register block
constexpr int kVectors = 2;    // 16-float vectors of output channels per register block
constexpr int64_t kGroupBytes = 1 << 20;  // x and g of a group of images: about L2's size
constexpr int64_t kMaxGroups = 64;         // bounds the groups' buffers: 64 copies of dw

struct Shape {
  int64_t n, h, w, c, oh, ow, o, kh, kw, stride, ph, pw;
};

// [first, last) of the output indices i whose input index stride*i + offset lies in [0, size).
void Range(int64_t n, int64_t stride, int64_t offset, int64_t size, int64_t* first,
           int64_t* last) {
  *first = 0;
  while (*first < n && stride * *first + offset < 0) ++(*first);
  *last = n;
  while (*last > *first && stride * (*last - 1) + offset >= size) --(*last);
}

// dw's block at (tap kh, kw; 8 input channels, 32 output channels) += the group's sum; the
// group is `images` images from x and g (already offset to the block's channels).
void Block(const Shape& s, const float* x, const float* g, float* dw, int64_t images, int kh,
           int kw) {
  int64_t i0, i1, j0, j1;
  Range(s.oh, s.stride, kh - s.ph, s.h, &i0, &i1);
  Range(s.ow, s.stride, kw - s.pw, s.w, &j0, &j1);
  if (i0 >= i1 || j0 >= j1) return;
  f32x16 acc[kChannels][kVectors];
  for (int c = 0; c < kChannels; ++c)
    for (int v = 0; v < kVectors; ++v) std::memcpy(&acc[c][v], dw + c * s.o + v * 16, 64);
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* xr = x + ((n * s.h + s.stride * i + kh - s.ph) * s.w +
                             s.stride * j0 + kw - s.pw) * s.c;
      const float* gr = g + ((n * s.oh + i) * s.ow + j0) * s.o;
      for (int64_t j = j0; j < j1; ++j, xr += s.stride * s.c, gr += s.o) {
        f32x16 gv[kVectors];
        for (int v = 0; v < kVectors; ++v) std::memcpy(&gv[v], gr + v * 16, 64);
        for (int c = 0; c < kChannels; ++c) {
          const float xv = xr[c];
          for (int v = 0; v < kVectors; ++v) acc[c][v] += xv * gv[v];
        }
      }
    }
  }
  for (int c = 0; c < kChannels; ++c)
    for (int v = 0; v < kVectors; ++v) std::memcpy(dw + c * s.o + v * 16, &acc[c][v], 64);
}

// The group of images starting at n0 into dw (zeroed here).
void Group(const Shape& s, const float* x, const float* g, float* dw, int64_t n0,
           int64_t images) {
  std::memset(dw, 0, sizeof(float) * s.kh * s.kw * s.c * s.o);
  const float* xg = x + n0 * s.h * s.w * s.c;
  const float* gg = g + n0 * s.oh * s.ow * s.o;
  for (int kh = 0; kh < s.kh; ++kh)
    for (int kw = 0; kw < s.kw; ++kw)
      for (int64_t c = 0; c < s.c; c += kChannels)
        for (int64_t o = 0; o < s.o; o += 16 * kVectors)
          Block(s, xg + c, gg + o, dw + ((kh * s.kw + kw) * s.c + c) * s.o + o, images, kh, kw);
}

struct Work {
  Shape s;
  const float* x;
  const float* g;
  int64_t group, groups;
  std::unique_ptr<float[]> sums;    // [groups, KH*KW*C*O], each zeroed by Group
  std::atomic<int64_t> next{0};     // the next group to take
  std::atomic<int64_t> done{0};     // groups finished

  void Run() {
    const int64_t size = s.kh * s.kw * s.c * s.o;
    for (int64_t k; (k = next.fetch_add(1)) < groups;) {
      const int64_t n0 = k * group;
      Group(s, x, g, sums.get() + k * size, n0, std::min(group, s.n - n0));
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// Splits the images into groups of about kGroupBytes (at most kMaxGroups), sums each group on
// XLA's thread pool (this thread takes groups too, so the call finishes even when the pool is
// busy), then adds the groups' sums in order into out.
void Compute(ffi::ThreadPool& pool, const float* x, const float* g, float* out, const Shape& s,
             int64_t per_image) {
  auto work = std::make_shared<Work>();
  work->s = s;
  work->x = x;
  work->g = g;
  work->group = std::max<int64_t>({1, std::min(s.n, kGroupBytes / per_image),
                                    (s.n + kMaxGroups - 1) / kMaxGroups});
  work->groups = (s.n + work->group - 1) / work->group;
  const int64_t size = s.kh * s.kw * s.c * s.o;
  work->sums.reset(new float[work->groups * size]);
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), work->groups) - 1;
  std::exception_ptr failed;
  try {
    for (int64_t t = 0; t < helpers; ++t) pool.Schedule([work] { work->Run(); });
  } catch (...) {  // helpers already queued may still run: finish and wait before leaving
    failed = std::current_exception();
  }
  work->Run();
  while (work->done.load(std::memory_order_acquire) < work->groups) std::this_thread::yield();
  if (failed) std::rethrow_exception(failed);
  std::memcpy(out, work->sums.get(), sizeof(float) * size);
  for (int64_t k = 1; k < work->groups; ++k) {
    const float* part = work->sums.get() + k * size;
    for (int64_t e = 0; e < size; ++e) out[e] += part[e];
  }
}

ffi::Error ConvWeightGradient(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                              ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> dw,
                              int64_t stride, int64_t pad_h, int64_t pad_w) {
  auto xd = x.dimensions(), gd = g.dimensions(), wd = dw->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || wd.size() != 4 || xd[0] != gd[0] ||
      wd[2] != xd[3] || wd[3] != gd[3] || xd[3] % kChannels || gd[3] % (16 * kVectors) ||
      stride < 1) {
    return ffi::Error::InvalidArgument("conv_weight_gradient: unsupported shapes or stride");
  }
  const int64_t size = wd[0] * wd[1] * wd[2] * wd[3];
  float* out = dw->typed_data();
  const int64_t per_image = (xd[1] * xd[2] * xd[3] + gd[1] * gd[2] * gd[3]) * sizeof(float);
  if (xd[0] == 0 || size == 0 || per_image == 0) {  // nothing to sum
    std::memset(out, 0, sizeof(float) * size);
    return ffi::Error::Success();
  }
  try {
    Compute(pool, x.typed_data(), g.typed_data(), out,
            Shape{xd[0], xd[1], xd[2], xd[3], gd[1], gd[2], gd[3], wd[0], wd[1], stride, pad_h,
                  pad_w},
            per_image);
  } catch (const std::exception& e) {  // std::bad_alloc for the groups' buffers, say
    return ffi::Error::Internal(std::string("conv_weight_gradient: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

// 1 where the kernel was compiled with AVX-512 (what its register blocks are sized for).
extern "C" int VaeJaxHasAvx512() {
#ifdef __AVX512F__
  return 1;
#else
  return 0;
#endif
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(VaeJaxConvWeightGradient, ConvWeightGradient,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_h")
                                  .Attr<int64_t>("pad_w"));
