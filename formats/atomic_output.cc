#include "formats/atomic_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace shrink {

Result<AtomicOutput> AtomicOutput::create(const std::string& path) {
  AtomicOutput out;
  out.path_ = path;
  // mkstemp in the destination's folder so rename() stays on one file system.
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = ::mkstemp(buf.data());
  if (fd < 0) return make_error(path + ": cannot create output: " + std::strerror(errno));
  ::fchmod(fd, 0644);
  out.temp_path_ = buf.data();
  out.f_ = ::fdopen(fd, "wb");
  if (out.f_ == nullptr) {
    int e = errno;
    ::close(fd);
    ::unlink(out.temp_path_.c_str());
    return make_error(path + ": cannot open output stream: " + std::strerror(e));
  }
  std::setvbuf(out.f_, nullptr, _IOFBF, 1 << 20);  // 1 MiB buffer for many small header writes
  return out;
}

AtomicOutput::AtomicOutput(AtomicOutput&& o) noexcept
    : path_(std::move(o.path_)), temp_path_(std::move(o.temp_path_)), f_(o.f_), offset_(o.offset_),
      committed_(o.committed_) {
  o.f_ = nullptr;
  o.temp_path_.clear();
}

AtomicOutput::~AtomicOutput() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status AtomicOutput::write(const void* data, size_t n) {
  if (n == 0) return {};
  if (std::fwrite(data, 1, n, f_) != n)
    return make_error(path_ + ": write failed at offset " + std::to_string(offset_) + ": " + std::strerror(errno));
  offset_ += n;
  return {};
}

Status AtomicOutput::pad_to(uint64_t alignment) {
  static const char zeros[256] = {};
  uint64_t rem = offset_ % alignment;
  if (rem == 0) return {};
  uint64_t pad = alignment - rem;
  while (pad > 0) {
    size_t n = pad > sizeof(zeros) ? sizeof(zeros) : static_cast<size_t>(pad);
    SHRINK_CHECK(write(zeros, n));
    pad -= n;
  }
  return {};
}

Status AtomicOutput::commit() {
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0)
    return make_error(path_ + ": cannot flush output: " + std::strerror(errno));
  int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) return make_error(path_ + ": cannot close output: " + std::strerror(errno));
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0)
    return make_error(path_ + ": cannot rename the finished output into place: " + std::strerror(errno));
  committed_ = true;
  return {};
}

}  // namespace shrink
