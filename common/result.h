// Result<T>: the value or the one-line error a library function hands back to tools/.
// Library code never prints and never exits (DESIGN.md, convention 7); it returns an
// Error whose message names the file, the field, the bad value and the rule it broke.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace shrink {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}           // NOLINT: implicit on purpose
  Result(Error error) : v_(std::move(error)) {}       // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Status: success or an Error, for functions with nothing else to return.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : err_(std::move(error.message)), failed_(true) {}  // NOLINT
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  Error error() const { return Error{err_}; }
  const std::string& message() const { return err_; }

 private:
  std::string err_;
  bool failed_ = false;
};

inline Error make_error(std::string message) { return Error{std::move(message)}; }

}  // namespace shrink

// Propagate an error from an expression returning Status or Result<T>.
#define SHRINK_CHECK(expr)                                   \
  do {                                                       \
    auto&& shrink_check_r_ = (expr);                         \
    if (!shrink_check_r_.ok()) return shrink_check_r_.error(); \
  } while (0)

// Bind the value of a Result<T> expression or return its error.
#define SHRINK_CONCAT_INNER(a, b) a##b
#define SHRINK_CONCAT(a, b) SHRINK_CONCAT_INNER(a, b)
#define SHRINK_ASSIGN(lhs, expr) SHRINK_ASSIGN_IMPL(SHRINK_CONCAT(shrink_assign_r_, __LINE__), lhs, expr)
#define SHRINK_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                       \
  if (!tmp.ok()) return tmp.error();       \
  lhs = std::move(tmp).value()
