// Function identities, the invoker registry and the stream objects that
// cereal encodes calls through.
#include "wire/remote_call.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <istream>
#include <mutex>
#include <ostream>
#include <streambuf>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

namespace pools {
namespace {

constexpr std::size_t code_check_bytes = 16;

std::uint64_t fnv1a64(const void* data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ull) {
  auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// ---- invokers --------------------------------------------------------------

struct InvokerEntry {
  detail::InvokeFn fn;
  const char* name;  // typeid names live as long as the program
};

// Filled during static initialization (and by libraries loaded later), so it
// is built on first use and guarded.
struct InvokerTable {
  std::mutex mutex;
  std::unordered_map<std::uint64_t, InvokerEntry> by_id;
};
InvokerTable& invokers() {
  static auto* t = new InvokerTable;
  return *t;
}

// ---- modules -----------------------------------------------------------------

// The key of a loaded module: 0 for the executable, else a hash of the file's
// base name (the same library may be installed at different paths).
std::uint64_t module_key(const char* path, bool is_executable) {
  if (is_executable || !path || !*path) return 0;
  const char* base = std::strrchr(path, '/');
  base = base ? base + 1 : path;
  const std::uint64_t h = fnv1a64(base, std::strlen(base));
  return h ? h : 1;
}

}  // namespace

namespace detail {

std::string demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || !out) return mangled;
  std::string s(out);
  std::free(out);
  return s;
}

std::string unsendable_reason(bool is_pointer) {
  return is_pointer ? "a raw pointer means nothing in another process (send the value)"
                    : "it has no serialize function (give it one, as cereal documents)";
}

std::uint64_t register_invoker(const char* mangled_name, InvokeFn fn) noexcept {
  const std::uint64_t id = fnv1a64(mangled_name, std::strlen(mangled_name));
  InvokerTable& t = invokers();
  std::lock_guard lock(t.mutex);
  auto [it, inserted] = t.by_id.try_emplace(id, InvokerEntry{fn, mangled_name});
  // The same invoker instantiated in two modules registers twice: either copy
  // does the same. Two different names with one hash would be ambiguous: the
  // entry is poisoned so that neither can be called by mistake.
  if (!inserted && std::strcmp(it->second.name, mangled_name) != 0) it->second.fn = nullptr;
  return id;
}

namespace {

struct ModuleInfo {
  std::uint64_t key;
  std::uintptr_t base;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> code;  // executable segments
};

std::vector<ModuleInfo> loaded_modules() {
  std::vector<ModuleInfo> out;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* arg) -> int {
        auto& mods = *static_cast<std::vector<ModuleInfo>*>(arg);
        const bool executable = mods.empty();  // listed first
        ModuleInfo m{module_key(info->dlpi_name, executable), info->dlpi_addr, {}};
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
            m.code.emplace_back(info->dlpi_addr + ph.p_vaddr,
                                info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
        }
        mods.push_back(std::move(m));
        return 0;
      },
      &out);
  return out;
}

// True when a and the code_check_bytes after it lie in one of m's executable segments.
bool holds_code(const ModuleInfo& m, std::uintptr_t a) {
  for (auto [lo, hi] : m.code)
    if (a >= lo && a + code_check_bytes <= hi) return true;
  return false;
}

// Modules change only when libraries are loaded or unloaded; the list is
// rebuilt when a lookup misses.
struct ModuleCache {
  std::mutex mutex;
  std::vector<ModuleInfo> mods;
};
ModuleCache& module_cache() {
  static auto* c = new ModuleCache;
  return *c;
}

template <class Pred>
const ModuleInfo* find_module(Pred pred, ModuleInfo& copy) {
  ModuleCache& c = module_cache();
  std::lock_guard lock(c.mutex);
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (const auto& m : c.mods)
      if (pred(m)) {
        copy = m;
        return &copy;
      }
    if (attempt == 0) c.mods = loaded_modules();
  }
  return nullptr;
}

}  // namespace

void identify_function(void* fn, CallIdentity& id) {
  const auto a = reinterpret_cast<std::uintptr_t>(fn);
  // The last function identified, per thread: bulk submissions repeat it.
  thread_local std::uintptr_t last_address = 0;
  thread_local CallIdentity last;
  if (a != last_address || a == 0) {
    ModuleInfo m;
    if (!find_module([&](const ModuleInfo& mod) { return holds_code(mod, a); }, m))
      throw Error(fmt::format("the function at {} is not code of a loaded module", fn));
    last.fn_module = m.key == 0 ? ~std::uint64_t{0} : m.key;  // 0 means "no function"
    last.fn_offset = a - m.base;
    last.fn_check = fnv1a64(fn, code_check_bytes);
    last_address = a;
  }
  id.fn_module = last.fn_module;
  id.fn_offset = last.fn_offset;
  id.fn_check = last.fn_check;
}

[[noreturn]] void throw_decode_error(std::string_view what, std::size_t size) {
  throw Error(fmt::format("malformed call data: {} could not be decoded from {} bytes", what, size));
}

namespace {

// A streambuf that appends to a std::string, and one that reads a byte range.
struct StringSink : std::streambuf {
  std::string* out = nullptr;
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out->append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) out->push_back(traits_type::to_char_type(c));
    return c;
  }
};
struct RangeSource : std::streambuf {
  void reset(std::string_view in) {
    char* p = const_cast<char*>(in.data());
    setg(p, p, p + in.size());
  }
  std::size_t left() const { return static_cast<std::size_t>(egptr() - gptr()); }
};

struct Streams {
  StringSink sink;
  RangeSource source;
  std::ostream os{&sink};
  std::istream is{&source};
};
Streams& streams() {
  thread_local Streams s;
  return s;
}

}  // namespace

std::ostream& output_stream(std::string& out) {
  Streams& s = streams();
  s.sink.out = &out;
  s.os.clear();
  return s.os;
}

std::istream& input_stream(std::string_view in) {
  Streams& s = streams();
  s.source.reset(in);
  s.is.clear();
  return s.is;
}

void check_consumed(std::istream& in, std::string_view what) {
  auto* src = static_cast<RangeSource*>(in.rdbuf());
  if (src->left() != 0)
    throw Error(fmt::format("malformed call data: {} left {} bytes over", what, src->left()));
}

}  // namespace detail

namespace wire {

namespace {

// Identities this thread verified lately (a worker sees the same few again
// and again): verification takes locks and walks the module list.
struct VerifiedCall {
  detail::CallIdentity id;
  detail::InvokeFn invoke = nullptr;
  void* fn = nullptr;
};
constexpr std::size_t verified_slots = 16;

VerifiedCall& verified_slot(const detail::CallIdentity& id) {
  thread_local VerifiedCall slots[verified_slots];
  return slots[(id.invoker ^ id.fn_offset) % verified_slots];
}

bool same_identity(const detail::CallIdentity& a, const detail::CallIdentity& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

ResolvedCall verify(const detail::CallIdentity& id);

}  // namespace

ResolvedCall resolve_call(std::string_view payload) {
  if (payload.size() < detail::identity_size)
    throw Error(fmt::format("malformed call: {} bytes, less than its {}-byte identity",
                            payload.size(), detail::identity_size));
  detail::CallIdentity id;
  std::memcpy(&id, payload.data(), detail::identity_size);
  VerifiedCall& slot = verified_slot(id);
  ResolvedCall r;
  if (slot.invoke && same_identity(slot.id, id)) {
    r.invoke = slot.invoke;
    r.fn = slot.fn;
  } else {
    r = verify(id);
    slot = VerifiedCall{id, r.invoke, r.fn};
  }
  r.args = payload.substr(detail::identity_size);
  return r;
}

namespace {

ResolvedCall verify(const detail::CallIdentity& id) {
  ResolvedCall r;
  {
    InvokerTable& t = invokers();
    std::lock_guard lock(t.mutex);
    auto it = t.by_id.find(id.invoker);
    if (it == t.by_id.end() || !it->second.fn)
      throw Error(fmt::format(
          "cannot verify the call: no function with identity {:016x} in this executable "
          "(is every process running the same program?)",
          id.invoker));
    r.invoke = it->second.fn;
  }
  if (id.fn_module != 0) {
    const std::uint64_t key = id.fn_module == ~std::uint64_t{0} ? 0 : id.fn_module;
    detail::ModuleInfo m;
    if (!detail::find_module([&](const detail::ModuleInfo& mod) { return mod.key == key; }, m))
      throw Error(fmt::format("cannot verify the call: its function's module ({:016x}) is not "
                              "loaded in this process",
                              key));
    const std::uintptr_t a = m.base + id.fn_offset;
    if (!detail::holds_code(m, a) || fnv1a64(reinterpret_cast<const void*>(a),
                                                       code_check_bytes) != id.fn_check)
      throw Error(fmt::format("cannot verify the call: offset {:#x} is not the same function "
                              "in this process's copy of the program",
                              id.fn_offset));
    r.fn = reinterpret_cast<void*>(a);
  }
  return r;
}

}  // namespace

std::string executable_identity() {
  std::string id;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* arg) -> int {
        auto& out = *static_cast<std::string*>(arg);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_NOTE) continue;
          auto* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
          const char* end = p + ph.p_memsz;
          while (p + sizeof(ElfW(Nhdr)) <= end) {
            auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const char* name = p + sizeof(ElfW(Nhdr));
            const char* desc = name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0)
              out = "build-id:" + fmt::format("{:02x}", fmt::join(reinterpret_cast<const unsigned char*>(desc),
                                                                 reinterpret_cast<const unsigned char*>(desc) + n->n_descsz, ""));
            p = desc + ((n->n_descsz + 3) & ~3u);
          }
        }
        return 1;  // the executable only
      },
      &id);
  if (!id.empty()) return id;
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  struct stat st {};
  if (n <= 0 || stat("/proc/self/exe", &st) != 0) return "unknown";
  return fmt::format("file:{}:{}:{}", std::string_view(path, static_cast<std::size_t>(n)),
                     st.st_size, st.st_mtim.tv_sec);
}

std::string current_exception_type() {
  std::type_info* t = abi::__cxa_current_exception_type();
  return t ? detail::demangle(t->name()) : "unknown exception";
}

}  // namespace wire
}  // namespace pools
