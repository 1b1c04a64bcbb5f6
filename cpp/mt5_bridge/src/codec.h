// Wire codec of the bridge: UTF-16 <-> UTF-8, doubles <-> Decimal, varint-delimited Frame encoding
// (header fields composed around a pre-encoded body, so a frame can be resent with a fresh ack) and
// the decoder of server frames, which turns an OrderCommand into the flat KbCommand the EA reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kairos/bridge/v1/bridge.pb.h"
#include "kairos_bridge.h"

namespace kairos::bridge {

// Converts NUL-terminated UTF-16 to UTF-8 into out (at most max_bytes bytes, excluding the NUL).
// Returns KB_OK, KB_E_NULL, KB_E_BAD_UTF16 or KB_E_STRING_TOO_LONG.
int Utf16ToUtf8(const kb_char16* in, size_t max_bytes, std::string* out);
// As above, but a string that is too long is cut at a character boundary instead of refused.
int Utf16ToUtf8Truncate(const kb_char16* in, size_t max_bytes, std::string* out);
// Converts UTF-8 to NUL-terminated UTF-16 in out[capacity]. Returns KB_OK, KB_E_TRUNCATED (written
// cut at a character boundary) or KB_E_BAD_ARG when the input is not valid UTF-8.
int Utf8ToUtf16(const char* in, size_t len, kb_char16* out, size_t capacity);

// value = units * 10^-scale, with scale in 0..18. Returns false for non-finite input, a scale out of
// range or a value beyond int64.
bool ToDecimal(double value, int32_t scale, kairos_types_v1_Decimal* out);
double FromDecimal(const kairos_types_v1_Decimal& d);

// Encodes frame->body (and nothing else) into out: the bytes that follow the header fields.
bool EncodeBody(const kairos_bridge_v1_Frame& frame, std::vector<uint8_t>* out);
// Encodes the body of a Frame carrying this TickBatch (field 14), byte-identical to EncodeBody but
// several times faster: packed columns are written directly instead of by nanopb's two passes. This
// is the network thread's hot path.
void EncodeTicksBody(const kairos_marketdata_v1_TickBatch& batch, std::vector<uint8_t>* out);

// Appends varint(len) + header(sequence, ack, sent_time_us) + body to out; byte-identical to nanopb
// encoding the whole Frame delimited (fields in number order, zero fields omitted).
void AppendFrame(uint64_t sequence, uint64_t ack, int64_t sent_time_us, const uint8_t* body, size_t body_len,
                 std::vector<uint8_t>* out);

// Result of reading one delimited frame from a byte buffer.
enum class ReadStatus { kFrame, kNeedMore, kOversized, kMalformed };
// Reads one varint-delimited Frame from data[0..len). On kFrame, *consumed is the bytes used.
ReadStatus ReadFrame(const uint8_t* data, size_t len, kairos_bridge_v1_Frame* frame, size_t* consumed);

// Checks an OrderCommand and converts it to the EA's KbCommand. On failure returns false and puts
// the reason in *why (the bridge answers such a command with BRIDGE_STATUS_INVALID itself).
bool CommandToKb(const kairos_bridge_v1_OrderCommand& cmd, KbCommand* out, std::string* why);

int64_t NowMicros();

// The value of a proto3 enum field as decoded by nanopb. proto3 enums are open: the wire may carry
// numbers outside the C enum's range, and loading such a value through the enum type is undefined
// behaviour in C++ (found by the fuzzer), so the bytes are read as an int.
template <typename E>
int32_t EnumValue(const E& e) {
  static_assert(sizeof(E) == sizeof(int32_t), "nanopb enums are int-sized");
  int32_t v;
  std::memcpy(&v, &e, sizeof(v));
  return v;
}  // wall clock, microseconds since the Unix epoch

}  // namespace kairos::bridge
