// Calls that cross a process: what may cross (checked at compile time, refused
// at add_task with a message naming the type), how a call is encoded (the
// function's identity, then its arguments in a cereal binary archive), and the
// invoker that a worker process runs for it.
//
// Identity: every process of a program runs the same executable, so each
// (function, argument types) pair has an invoker instantiated in it, which
// registers itself at start-up under a hash of its mangled type name. A plain
// function pointer additionally travels as (module, offset from the module's
// load base, hash of its first code bytes), which the worker checks against
// its own executable segments before it calls anything.
#pragma once

#include <array>
#include <atomic>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>

namespace pools::detail {

// ---- type names ---------------------------------------------------------------

/// The demangled form of a typeid name ("std::vector<int, ...>").
std::string demangle(const char* mangled);
template <class T>
std::string type_name() {
  return demangle(typeid(T).name());
}

// ---- what can cross a process ---------------------------------------------------

template <class T>
struct unsendable;
/// void when T can be sent to another process, otherwise the (innermost) type
/// that cannot: a raw pointer, a lambda, a class with no serialize function.
template <class T>
using unsendable_t = typename unsendable<std::remove_cv_t<T>>::type;

template <class... Ts>
struct first_unsendable {
  using type = void;
};
template <class T, class... Ts>
struct first_unsendable<T, Ts...> {
  using type = std::conditional_t<std::is_void_v<unsendable_t<T>>,
                                  typename first_unsendable<Ts...>::type, unsendable_t<T>>;
};

template <class T>
inline constexpr bool cereal_serializable =
    cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
    cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value;

// Scalars and classes with their own serialize/save/load functions can cross;
// pointers, references, functions and the rest cannot. std templates are
// looked into, so that vector<Widget> names Widget.
template <class T>
struct unsendable {
  using type = std::conditional_t<std::is_arithmetic_v<T> || std::is_enum_v<T> ||
                                      (std::is_class_v<T> && cereal_serializable<T>),
                                  void, T>;
};
template <class C, class Tr, class A>
struct unsendable<std::basic_string<C, Tr, A>> {
  using type = typename unsendable<C>::type;
};
template <class... Ts>
struct unsendable<std::tuple<Ts...>> : first_unsendable<Ts...> {};
template <class A, class B>
struct unsendable<std::pair<A, B>> : first_unsendable<A, B> {};
template <class... Ts>
struct unsendable<std::variant<Ts...>> : first_unsendable<Ts...> {};
template <>
struct unsendable<std::monostate> {
  using type = void;
};
template <class T>
struct unsendable<std::optional<T>> : first_unsendable<T> {};
template <class T, std::size_t N>
struct unsendable<std::array<T, N>> : first_unsendable<T> {};
template <class T, class A>
struct unsendable<std::vector<T, A>> : first_unsendable<T> {};
template <class T, class A>
struct unsendable<std::deque<T, A>> : first_unsendable<T> {};
template <class T, class A>
struct unsendable<std::list<T, A>> : first_unsendable<T> {};
template <class T, class C, class A>
struct unsendable<std::set<T, C, A>> : first_unsendable<T> {};
template <class T, class C, class A>
struct unsendable<std::multiset<T, C, A>> : first_unsendable<T> {};
template <class K, class V, class C, class A>
struct unsendable<std::map<K, V, C, A>> : first_unsendable<K, V> {};
template <class K, class V, class C, class A>
struct unsendable<std::multimap<K, V, C, A>> : first_unsendable<K, V> {};
template <class T, class H, class E, class A>
struct unsendable<std::unordered_set<T, H, E, A>> : first_unsendable<T> {};
template <class K, class V, class H, class E, class A>
struct unsendable<std::unordered_map<K, V, H, E, A>> : first_unsendable<K, V> {};
template <class T, class D>
struct unsendable<std::unique_ptr<T, D>> : first_unsendable<T> {};
template <class T>
struct unsendable<std::shared_ptr<T>> : first_unsendable<T> {};
template <class T>
struct unsendable<std::complex<T>> : first_unsendable<T> {};
template <class R, class P>
struct unsendable<std::chrono::duration<R, P>> : first_unsendable<R> {};
template <class C, class D>
struct unsendable<std::chrono::time_point<C, D>> : first_unsendable<D> {};

/// How a callable crosses a process.
enum class CallableKind {
  function_pointer,  // a plain function: its identity travels
  stateless,         // a captureless lambda or an empty function object: rebuilt there
  object,            // a function object with a serialize function: it travels
  unsendable,        // a capturing lambda, a member pointer, std::function, ...
};

template <class F>
inline constexpr CallableKind callable_kind =
    (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>)
        ? CallableKind::function_pointer
    : (std::is_empty_v<F> && std::is_default_constructible_v<F> &&
       std::is_trivially_copyable_v<F>)
        ? CallableKind::stateless
    : (std::is_class_v<F> && cereal_serializable<F>) ? CallableKind::object
                                                     : CallableKind::unsendable;

template <class... T>
struct type_list {};

// The parameter types of F when it has exactly one call signature (a plain
// function, or a class with one non-template operator()): arguments are then
// converted to them before they travel, so f(std::string) accepts "text".
template <class F, class = void>
struct call_signature {
  static constexpr bool known = false;
};
template <class R, class... P>
struct call_signature<R (*)(P...)> {
  static constexpr bool known = true;
  using params = type_list<std::decay_t<P>...>;
};
template <class R, class... P>
struct call_signature<R (*)(P...) noexcept> : call_signature<R (*)(P...)> {};
template <class M>
struct member_signature {
  static constexpr bool known = false;
};
#define POOLS_MEMBER_SIGNATURE(QUALIFIERS)                  \
  template <class R, class C, class... P>                   \
  struct member_signature<R (C::*)(P...) QUALIFIERS> {     \
    static constexpr bool known = true;                     \
    using params = type_list<std::decay_t<P>...>;           \
  };
POOLS_MEMBER_SIGNATURE()
POOLS_MEMBER_SIGNATURE(const)
POOLS_MEMBER_SIGNATURE(noexcept)
POOLS_MEMBER_SIGNATURE(const noexcept)
#undef POOLS_MEMBER_SIGNATURE
template <class F>
struct call_signature<F, std::void_t<decltype(&F::operator())>>
    : member_signature<decltype(&F::operator())> {};

template <class F, class... Args>
struct remote_params {
  using type = type_list<std::decay_t<Args>...>;
};
template <class F, class... Args>
  requires(call_signature<F>::known)
struct remote_params<F, Args...> {
  using type = typename call_signature<F>::params;
};
/// The types a call f(args...) travels as: F's parameter types when known
/// (and of the same count), else the decayed argument types.
template <class F, class... Args>
using remote_params_t = typename remote_params<F, Args...>::type;

/// An argument as encoded: a reference when it already has the parameter's
/// type (no copy of a large argument), else converted to it.
template <class A, class Arg>
using encoded_arg_t = std::conditional_t<std::is_same_v<A, std::decay_t<Arg>>, const A&, A>;

/// Everything add_task checks before a call may cross: the callable, each
/// argument, the result (which must also be default-constructible to be
/// received). true when it can.
template <class F, class R, class... A>
inline constexpr bool remote_callable =
    callable_kind<F> != CallableKind::unsendable &&
    std::is_invocable_r_v<R, F, A...> &&
    std::is_void_v<typename first_unsendable<A...>::type> &&
    (std::is_default_constructible_v<A> && ...) &&
    (std::is_void_v<R> ||
     (std::is_void_v<unsendable_t<R>> && std::is_default_constructible_v<R>));

/// Why a type cannot cross ("a raw pointer ...", "no serialize function").
std::string unsendable_reason(bool is_pointer);

/// Explains the first reason why f(args...) cannot cross a process.
template <class F, class R, class... A>
std::string why_not_remote() {
  if constexpr (callable_kind<F> == CallableKind::unsendable) {
    return "the function of type '" + type_name<F>() +
           "' cannot be sent to another process: give a plain function, a captureless lambda "
           "or a function object with a serialize function (a lambda that captures cannot "
           "cross)";
  } else if constexpr (!std::is_invocable_r_v<R, F, A...>) {
    return "the function of type '" + type_name<F>() +
           "' cannot be called with its arguments converted to its parameter types";
  } else if constexpr (!std::is_void_v<typename first_unsendable<A...>::type>) {
    using Bad = typename first_unsendable<A...>::type;
    return "an argument of type '" + type_name<Bad>() +
           "' cannot be sent to another process: " + unsendable_reason(std::is_pointer_v<Bad>);
  } else if constexpr (!(std::is_default_constructible_v<A> && ...)) {
    return "an argument type is not default-constructible (a worker constructs each argument, "
           "then loads it)";
  } else if constexpr (!std::is_void_v<R> && !std::is_void_v<unsendable_t<R>>) {
    using Bad = unsendable_t<R>;
    return "the result type '" + type_name<Bad>() +
           "' cannot be sent back from another process: " +
           unsendable_reason(std::is_pointer_v<Bad>);
  } else {
    return "the result type '" + type_name<R>() +
           "' is not default-constructible (it is constructed, then loaded)";
  }
}

// ---- encoding --------------------------------------------------------------------

/// The fixed prefix of every call payload: which invoker, and for a plain
/// function which function.
struct CallIdentity {
  std::uint64_t invoker = 0;     // hash of the invoker's mangled type name
  std::uint64_t fn_module = 0;   // 0: no function pointer; else which loaded module
  std::uint64_t fn_offset = 0;   // from the module's load base
  std::uint64_t fn_check = 0;    // hash of the function's first code bytes
};
inline constexpr std::size_t identity_size = sizeof(CallIdentity);
static_assert(identity_size == 32);

/// Fills the function fields of id for a plain function (dladdr, cached).
/// Throws pools::Error when the address is not code of a loaded module.
void identify_function(void* fn, CallIdentity& id);

/// The worker side of one invoker: decodes the callable and arguments from
/// `args`, calls, appends the encoded result to `out`. `fn` is the verified
/// function address for a plain function, else null. Throws what the call
/// throws (the worker reports it as a RemoteError).
using InvokeFn = void (*)(std::string_view args, void* fn, std::string& out);

/// Registers an invoker under the hash of its mangled name; returns the hash.
/// Runs during static initialization, in every process of the program.
std::uint64_t register_invoker(const char* mangled_name, InvokeFn fn) noexcept;

/// An ostream/istream pair over a std::string / a byte range, reused per
/// thread so that encoding a call does not build stream objects each time.
std::ostream& output_stream(std::string& out);
std::istream& input_stream(std::string_view in);

template <class... T>
void encode(std::string& out, T&... values) {
  cereal::BinaryOutputArchive ar(output_stream(out));
  ar(values...);
}

/// Decodes values; throws pools::Error when the bytes do not hold them exactly.
[[noreturn]] void throw_decode_error(std::string_view what, std::size_t size);
void check_consumed(std::istream& in, std::string_view what);

template <class... T>
void decode(std::string_view in, std::string_view what, T&... values) {
  std::istream& is = input_stream(in);
  try {
    cereal::BinaryInputArchive ar(is);
    ar(values...);
  } catch (const cereal::Exception&) {
    throw_decode_error(what, in.size());
  }
  check_consumed(is, what);
}

template <class F, class R, class... A>
struct RemoteInvoker {

  static void invoke(std::string_view args, void* fn, std::string& out) {
    std::tuple<A...> values;
    F f = make_callable(args, fn, values);
    if constexpr (std::is_void_v<R>) {
      std::apply(std::move(f), std::move(values));
    } else {
      R r = std::apply(std::move(f), std::move(values));
      encode(out, r);
    }
  }

  static F make_callable(std::string_view args, void* fn, std::tuple<A...>& values) {
    if constexpr (callable_kind<F> == CallableKind::function_pointer) {
      decode(args, "the arguments", values);
      return reinterpret_cast<F>(fn);
    } else if constexpr (callable_kind<F> == CallableKind::stateless) {
      decode(args, "the arguments", values);
      return F{};
    } else {
      F f;
      decode(args, "the function object and arguments", f, values);
      return f;
    }
  }

  static const std::uint64_t id;
};

// Dynamic initialization of this member registers the invoker in every process
// that runs the executable, before main (it is odr-used by encode_call).
template <class F, class R, class... A>
const std::uint64_t RemoteInvoker<F, R, A...>::id = register_invoker(
    typeid(RemoteInvoker<F, R, A...>).name(), &RemoteInvoker<F, R, A...>::invoke);

/// Encodes a call of f(args...) for RemoteInvoker<F, A...>: identity, then the
/// function object (when it travels) and the arguments.
template <class F, class R, class... A, class Fn, class... Args>
void encode_call(std::string& out, Fn& f, Args&... args) {
  CallIdentity id;
  id.invoker = RemoteInvoker<F, R, A...>::id;
  if constexpr (callable_kind<F> == CallableKind::function_pointer)
    identify_function(reinterpret_cast<void*>(static_cast<F>(f)), id);
  out.resize(identity_size);
  std::memcpy(out.data(), &id, identity_size);
  std::tuple<encoded_arg_t<A, Args>...> values(args...);
  if constexpr (callable_kind<F> == CallableKind::object) {
    encode(out, f, values);
  } else {
    encode(out, values);
  }
}

// ---- the task node ---------------------------------------------------------------

/// The part of a remote task that the pool needs, whatever its result type.
struct RemoteCall {
  std::string payload;  // CallIdentity, then the encoded callable and arguments
  // Stores a reply into the task: the encoded result (ok), or else `error`.
  // Returns true when the task succeeded. Never throws.
  bool (*settle)(TaskState* task, std::string_view result, std::exception_ptr error) noexcept;
  // Frees this RemoteCall when it is not part of its task (null: it is).
  void (*dispose)(RemoteCall* self) noexcept = nullptr;
  // Set by the pool (set_poll): reads replies that have arrived, if no other
  // thread is doing so (a waiter's poll, see TaskOps::poll). Atomic: a waiter
  // may already poll while the pool sets them (a task a group hands over).
  std::atomic<void (*)(void* pool) noexcept> poll{nullptr};
  std::atomic<void*> poll_arg{nullptr};

  void set_poll(void (*fn)(void*) noexcept, void* arg) noexcept {
    poll_arg.store(arg, std::memory_order_relaxed);
    poll.store(fn, std::memory_order_release);
  }
  void poll_now() const noexcept {
    if (auto* fn = poll.load(std::memory_order_acquire)) fn(poll_arg.load(std::memory_order_relaxed));
  }
};

/// A call on its way to another process: the task and its encoded call.
struct RemoteSubmission {
  TaskState* task;
  RemoteCall* call;
};

template <class R>
struct RemoteNode final : ResultState<R> {
  RemoteCall call;

  static bool settle(TaskState* base, std::string_view result, std::exception_ptr error) noexcept {
    auto* self = static_cast<RemoteNode*>(base);
    if (!error) {
      try {
        if constexpr (std::is_void_v<R>) {
          if (!result.empty()) throw_decode_error("a void result", result.size());
        } else {
          R value;
          decode(result, "the result", value);
          ::new (static_cast<void*>(std::addressof(self->value))) R(std::move(value));
        }
        return true;
      } catch (...) {
        error = std::current_exception();
      }
    }
    ::new (static_cast<void*>(std::addressof(self->error))) std::exception_ptr(std::move(error));
    return false;
  }
  // A remote task never runs in this process; a pool that tried would be a bug.
  static bool run(TaskState* base) noexcept {
    return settle(base, {}, std::make_exception_ptr(Error("a remote task cannot run locally")));
  }
  static void discard(TaskState*) noexcept {}
  static void destroy(TaskState* base) noexcept { NodeOps<RemoteNode>::destroy(base); }
  static void poll(TaskState* base) noexcept {
    static_cast<RemoteNode*>(base)->call.poll_now();
  }
  // A waiter polls for up to 1 ms (see block_until_final): a round trip is
  // tens of microseconds, but on a loaded machine a waiter that sleeps is
  // woken late, and one that polls reads its own reply.
  static constexpr TaskOps table{&run,    &discard, &destroy, &NodeOps<RemoteNode>::error_of,
                                 nullptr, 1'000'000, &poll};
};

/// Builds a pending remote task for f(args...), encoded, with two references.
template <class R, class F, class... A, class Fn, class... Args>
RemoteNode<R>* make_remote_node(std::string&& name, Fn& f, Args&... args) {
  using Node = RemoteNode<R>;
  void* mem = allocate_node(sizeof(Node));
  Node* node = ::new (mem) Node();
  node->ops = &Node::table;
  node->call.settle = &Node::settle;
  try {
    encode_call<F, R, A...>(node->call.payload, f, args...);
    if (!name.empty()) node->name = new std::string(std::move(name));
  } catch (...) {
    NodeOps<Node>::destroy(node);
    throw;
  }
  node->id = next_task_id();
  node->refs.store(2, std::memory_order_relaxed);
  return node;
}

}  // namespace pools::detail
