// SIGINT, SIGTERM, SIGHUP and SIGPIPE while commands run: every engine terminates the
// process groups of its commands (TERM, then KILL), and then the signal is
// raised again with its default action, so the program ends as it would have,
// leaving no command behind.
//
// The handlers are installed only for signals whose disposition is still the
// default when the first engine starts: a program's own handler is left alone.
#pragma once

namespace pools::detail {

/// Registers an engine's wake descriptor: one byte is written to it when a
/// termination signal arrives. Installs the handlers on first use. Returns a
/// slot for forget_termination_signals, or -1 when all slots are taken.
int watch_termination_signals(int wake_fd) noexcept;
void forget_termination_signals(int slot) noexcept;

/// In a worker process forked from a program that watched signals: forget the
/// program's engines and install the handlers afresh.
void reset_termination_signals_after_fork() noexcept;

/// The termination signal that arrived, or 0.
int pending_termination_signal() noexcept;

/// True once the signal was raised again (the program should be ending).
bool termination_raised() noexcept;

/// An engine has terminated its commands. When the last one has, the signal
/// is raised again with its default action. A second signal of the same kind
/// does not wait for the engines.
void termination_handled() noexcept;

}  // namespace pools::detail
