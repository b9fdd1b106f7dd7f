// _callbox_aec3: WebRTC's audio processing module (APM) with a tuned AEC3.
//
// Why this exists: the aec-audio-processing package builds APM but its Python API
// cannot set EchoCanceller3Config, and the defaults miss bench/aec.py's targets
// (0 ms delay, near-end attenuation in double talk). services/media/aec.py passes
// the tuned values (TUNED_AEC3_CONFIG) here.
//
// Built by `make deps` (target aec3-binding): headers from the package's sdist,
// linked against the libwebrtc-audio-processing-2.so bundled in the installed wheel.
// That library does not export EchoCanceller3Factory, so Aec3Factory below builds
// EchoCanceller3 itself (its constructor is exported).
//
// Python API:
//   Apm(sample_rate, config, noise_suppression=True)
//       config: {"suppressor.nearend_tuning.mask_lf.enr_transparent": 100, ...};
//       unknown names raise KeyError.
//   .process_render(block) -> None     10 ms int16 mono, the far end (speaker)
//   .process_capture(block) -> bytes   10 ms int16 mono, the microphone
//   .config_valid -> bool              EchoCanceller3Config::Validate kept it as given
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>

#include "api/audio/audio_processing.h"
#include "api/audio/echo_canceller3_config.h"
#include "api/audio/echo_control.h"
#include "modules/audio_processing/aec3/echo_canceller3.h"

namespace {

using Cfg = webrtc::EchoCanceller3Config;

// The settable fields, by dotted name: those TUNED_AEC3_CONFIG sets. To tune another
// EchoCanceller3Config field, add its line here.
enum class Kind { kFloat, kSize, kInt, kBool };
struct Field {
  const char* name;
  Kind kind;
  void* (*get)(Cfg&);
};

template <typename T>
constexpr Kind KindOf() {
  if constexpr (std::is_same_v<T, float>) return Kind::kFloat;
  if constexpr (std::is_same_v<T, size_t>) return Kind::kSize;
  if constexpr (std::is_same_v<T, int>) return Kind::kInt;
  if constexpr (std::is_same_v<T, bool>) return Kind::kBool;
}

#define FIELD(path)                                                      \
  Field{#path, KindOf<std::remove_reference_t<decltype(Cfg().path)>>(), \
        [](Cfg& c) -> void* { return &c.path; }}

const Field kFields[] = {
    FIELD(delay.default_delay),
    FIELD(delay.delay_headroom_samples),
    FIELD(ep_strength.default_len),
    FIELD(ep_strength.nearend_len),
    FIELD(erle.max_l),
    FIELD(suppressor.dominant_nearend_detection.enr_threshold),
    FIELD(suppressor.dominant_nearend_detection.enr_exit_threshold),
    FIELD(suppressor.dominant_nearend_detection.hold_duration),
    FIELD(suppressor.nearend_tuning.mask_lf.enr_transparent),
    FIELD(suppressor.nearend_tuning.mask_lf.enr_suppress),
    FIELD(suppressor.nearend_tuning.mask_lf.emr_transparent),
    FIELD(suppressor.nearend_tuning.mask_hf.enr_transparent),
    FIELD(suppressor.nearend_tuning.mask_hf.enr_suppress),
    FIELD(suppressor.nearend_tuning.mask_hf.emr_transparent),
    FIELD(suppressor.nearend_tuning.max_inc_factor),
    FIELD(suppressor.nearend_tuning.max_dec_factor_lf),
    FIELD(suppressor.normal_tuning.mask_lf.enr_suppress),
    FIELD(suppressor.normal_tuning.mask_lf.emr_transparent),
    FIELD(suppressor.normal_tuning.mask_hf.emr_transparent),
};
#undef FIELD

bool SetField(const Field& f, Cfg& c, PyObject* v) {
  void* p = f.get(c);
  switch (f.kind) {
    case Kind::kFloat: {
      double d = PyFloat_AsDouble(v);
      if (d == -1.0 && PyErr_Occurred()) return false;
      *static_cast<float*>(p) = static_cast<float>(d);
      return true;
    }
    case Kind::kSize: {
      size_t s = PyLong_AsSize_t(v);
      if (s == static_cast<size_t>(-1) && PyErr_Occurred()) return false;
      *static_cast<size_t*>(p) = s;
      return true;
    }
    case Kind::kInt: {
      long l = PyLong_AsLong(v);
      if (l == -1 && PyErr_Occurred()) return false;
      *static_cast<int*>(p) = static_cast<int>(l);
      return true;
    }
    case Kind::kBool: {
      int b = PyObject_IsTrue(v);
      if (b < 0) return false;
      *static_cast<bool*>(p) = b != 0;
      return true;
    }
  }
  return false;
}

bool ApplyDict(Cfg& c, PyObject* dict) {
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(dict, &pos, &key, &value)) {
    const char* name = PyUnicode_AsUTF8(key);
    if (!name) return false;
    const Field* found = nullptr;
    for (const Field& f : kFields)
      if (std::strcmp(f.name, name) == 0) found = &f;
    if (!found) {
      PyErr_Format(PyExc_KeyError, "unknown EchoCanceller3Config field %s", name);
      return false;
    }
    if (!SetField(*found, c, value)) return false;
  }
  return true;
}

// APM asks this factory for its echo controller: an EchoCanceller3 with our config.
class Aec3Factory : public webrtc::EchoControlFactory {
 public:
  explicit Aec3Factory(const Cfg& config) : config_(config) {}
  std::unique_ptr<webrtc::EchoControl> Create(int sample_rate_hz, int num_render_channels,
                                              int num_capture_channels) override {
    return std::make_unique<webrtc::EchoCanceller3>(config_, std::nullopt, sample_rate_hz,
                                                    num_render_channels,
                                                    num_capture_channels);
  }

 private:
  const Cfg config_;
};

struct ApmObject {
  PyObject_HEAD
  webrtc::AudioProcessing* apm;  // one reference, taken from the builder's scoped_refptr
  int rate;
  int frames;
  bool valid;
};

void Apm_dealloc(ApmObject* self) {
  if (self->apm) self->apm->Release();
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

int Apm_init(ApmObject* self, PyObject* args, PyObject* kwargs) {
  static const char* kw[] = {"sample_rate", "config", "noise_suppression", nullptr};
  int rate = 0, ns = 1;
  PyObject* dict = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO!|p", const_cast<char**>(kw), &rate,
                                   &PyDict_Type, &dict, &ns))
    return -1;
  if (rate != 8000 && rate != 16000 && rate != 32000 && rate != 48000) {
    PyErr_Format(PyExc_ValueError, "sample_rate must be 8, 16, 32 or 48 kHz, got %d", rate);
    return -1;
  }
  Cfg cfg;
  if (!ApplyDict(cfg, dict)) return -1;
  self->valid = Cfg::Validate(&cfg);  // clamps out-of-range values, false if it did

  // The same APM settings as aec-audio-processing's AudioProcessor (enable_aec,
  // enable_ns at ns_level 1, no AGC): only the echo canceller's config differs.
  webrtc::AudioProcessing::Config apm_cfg;
  apm_cfg.echo_canceller.enabled = true;
  apm_cfg.echo_canceller.mobile_mode = false;
  apm_cfg.noise_suppression.enabled = ns != 0;
  apm_cfg.noise_suppression.level = webrtc::AudioProcessing::Config::NoiseSuppression::kModerate;
  apm_cfg.gain_controller1.enabled = false;
  apm_cfg.gain_controller2.enabled = false;

  auto apm = webrtc::AudioProcessingBuilder()
                 .SetConfig(apm_cfg)
                 .SetEchoControlFactory(std::make_unique<Aec3Factory>(cfg))
                 .Create();
  if (!apm) {
    PyErr_SetString(PyExc_RuntimeError, "AudioProcessingBuilder::Create failed");
    return -1;
  }
  if (self->apm) self->apm->Release();
  self->apm = apm.release();
  self->rate = rate;
  self->frames = rate / 100;
  return 0;
}

bool GetBlock(ApmObject* self, PyObject* arg, Py_buffer* view) {
  if (!self->apm) {
    PyErr_SetString(PyExc_RuntimeError, "Apm not initialised");
    return false;
  }
  if (PyObject_GetBuffer(arg, view, PyBUF_C_CONTIGUOUS) < 0) return false;
  if (view->len != static_cast<Py_ssize_t>(self->frames * sizeof(int16_t))) {
    PyErr_Format(PyExc_ValueError, "block must be %d int16 samples", self->frames);
    PyBuffer_Release(view);
    return false;
  }
  return true;
}

PyObject* Apm_render(ApmObject* self, PyObject* arg) {
  Py_buffer view;
  if (!GetBlock(self, arg, &view)) return nullptr;
  webrtc::StreamConfig sc(self->rate, 1);
  int16_t unused[480];  // APM writes the (unmodified) render block back out
  int err;
  Py_BEGIN_ALLOW_THREADS
  err = self->apm->ProcessReverseStream(static_cast<const int16_t*>(view.buf), sc, sc, unused);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  if (err != 0) return PyErr_Format(PyExc_RuntimeError, "ProcessReverseStream: error %d", err);
  Py_RETURN_NONE;
}

PyObject* Apm_capture(ApmObject* self, PyObject* arg) {
  Py_buffer view;
  if (!GetBlock(self, arg, &view)) return nullptr;
  PyObject* out = PyBytes_FromStringAndSize(nullptr, view.len);
  if (!out) {
    PyBuffer_Release(&view);
    return nullptr;
  }
  webrtc::StreamConfig sc(self->rate, 1);
  int16_t* dst = reinterpret_cast<int16_t*>(PyBytes_AS_STRING(out));
  int err;
  Py_BEGIN_ALLOW_THREADS
  err = self->apm->ProcessStream(static_cast<const int16_t*>(view.buf), sc, sc, dst);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  if (err != 0) {
    Py_DECREF(out);
    return PyErr_Format(PyExc_RuntimeError, "ProcessStream: error %d", err);
  }
  return out;
}

PyObject* Apm_valid(ApmObject* self, void*) { return PyBool_FromLong(self->valid); }

PyMethodDef kApmMethods[] = {
    {"process_render", reinterpret_cast<PyCFunction>(Apm_render), METH_O,
     "Feed one 10 ms int16 mono block of the far end (what the speaker plays)."},
    {"process_capture", reinterpret_cast<PyCFunction>(Apm_capture), METH_O,
     "Process one 10 ms int16 mono microphone block; returns the output bytes."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef kApmGetSet[] = {
    {"config_valid", reinterpret_cast<getter>(Apm_valid), nullptr,
     "False when EchoCanceller3Config::Validate had to correct the config.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyTypeObject ApmType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_callbox_aec3",
                       "WebRTC APM with a tuned AEC3 (EchoCanceller3Config).", -1, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__callbox_aec3() {
  ApmType.tp_name = "_callbox_aec3.Apm";
  ApmType.tp_basicsize = sizeof(ApmObject);
  ApmType.tp_flags = Py_TPFLAGS_DEFAULT;
  ApmType.tp_doc = "WebRTC audio processing module with AEC3 built from a given config.";
  ApmType.tp_new = PyType_GenericNew;
  ApmType.tp_init = reinterpret_cast<initproc>(Apm_init);
  ApmType.tp_dealloc = reinterpret_cast<destructor>(Apm_dealloc);
  ApmType.tp_methods = kApmMethods;
  ApmType.tp_getset = kApmGetSet;
  if (PyType_Ready(&ApmType) < 0) return nullptr;
  PyObject* m = PyModule_Create(&kModule);
  if (!m) return nullptr;
  Py_INCREF(&ApmType);
  if (PyModule_AddObject(m, "Apm", reinterpret_cast<PyObject*>(&ApmType)) < 0) {
    Py_DECREF(&ApmType);
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
