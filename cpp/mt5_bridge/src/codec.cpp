#include "codec.h"

#include <pb_decode.h>
#include <pb_encode.h>

#include <chrono>
#include <cmath>
#include <cstring>

namespace kairos::bridge {

namespace {

// Reads one code point from NUL-terminated UTF-16; returns -1 on a lone surrogate.
int32_t NextCodePoint(const kb_char16*& p) {
  uint32_t c = static_cast<uint16_t>(*p++);
  if (c >= 0xD800 && c <= 0xDBFF) {
    uint32_t lo = static_cast<uint16_t>(*p);
    if (lo < 0xDC00 || lo > 0xDFFF) return -1;
    p++;
    return static_cast<int32_t>(0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00));
  }
  if (c >= 0xDC00 && c <= 0xDFFF) return -1;
  return static_cast<int32_t>(c);
}

size_t AppendUtf8(uint32_t cp, char* buf) {
  if (cp < 0x80) {
    buf[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    buf[0] = static_cast<char>(0xC0 | (cp >> 6));
    buf[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    buf[0] = static_cast<char>(0xE0 | (cp >> 12));
    buf[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  buf[0] = static_cast<char>(0xF0 | (cp >> 18));
  buf[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  buf[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  buf[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

int Convert16To8(const kb_char16* in, size_t max_bytes, bool truncate, std::string* out) {
  if (in == nullptr) return KB_E_NULL;
  out->clear();
  const kb_char16* p = in;
  while (*p != 0) {
    int32_t cp = NextCodePoint(p);
    if (cp < 0) return KB_E_BAD_UTF16;
    char buf[4];
    size_t n = AppendUtf8(static_cast<uint32_t>(cp), buf);
    if (out->size() + n > max_bytes) {
      if (truncate) return KB_OK;
      return KB_E_STRING_TOO_LONG;
    }
    out->append(buf, n);
  }
  return KB_OK;
}

// Decodes one UTF-8 code point at s[i..len); returns -1 if invalid.
int32_t DecodeUtf8(const uint8_t* s, size_t len, size_t* i) {
  uint8_t c = s[*i];
  int need;
  uint32_t cp;
  if (c < 0x80) {
    (*i)++;
    return c;
  } else if ((c & 0xE0) == 0xC0) {
    need = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    need = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    need = 3;
    cp = c & 0x07;
  } else {
    return -1;
  }
  if (*i + need >= len) return -1;
  for (int k = 1; k <= need; k++) {
    uint8_t cc = s[*i + k];
    if ((cc & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (cc & 0x3F);
  }
  static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  *i += need + 1;
  return static_cast<int32_t>(cp);
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

void PutVarint(uint64_t v, std::vector<uint8_t>* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<uint8_t>(v));
}

}  // namespace

int Utf16ToUtf8(const kb_char16* in, size_t max_bytes, std::string* out) {
  return Convert16To8(in, max_bytes, false, out);
}

int Utf16ToUtf8Truncate(const kb_char16* in, size_t max_bytes, std::string* out) {
  return Convert16To8(in, max_bytes, true, out);
}

int Utf8ToUtf16(const char* in, size_t len, kb_char16* out, size_t capacity) {
  if (capacity == 0) return KB_E_TRUNCATED;
  const auto* s = reinterpret_cast<const uint8_t*>(in);
  size_t i = 0, o = 0;
  int status = KB_OK;
  while (i < len) {
    int32_t cp = DecodeUtf8(s, len, &i);
    if (cp < 0) {
      out[o] = 0;
      return KB_E_BAD_ARG;
    }
    size_t units = cp >= 0x10000 ? 2 : 1;
    if (o + units + 1 > capacity) {
      status = KB_E_TRUNCATED;
      break;
    }
    if (units == 2) {
      uint32_t v = static_cast<uint32_t>(cp) - 0x10000;
      out[o++] = static_cast<kb_char16>(0xD800 + (v >> 10));
      out[o++] = static_cast<kb_char16>(0xDC00 + (v & 0x3FF));
    } else {
      out[o++] = static_cast<kb_char16>(cp);
    }
  }
  out[o] = 0;
  return status;
}

bool ToDecimal(double value, int32_t scale, kairos_types_v1_Decimal* out) {
  if (!std::isfinite(value) || scale < 0 || scale > 18) return false;
  double scaled = value * std::pow(10.0, scale);
  if (!(std::fabs(scaled) < 9.2e18)) return false;
  out->units = std::llround(scaled);
  out->scale = static_cast<uint32_t>(scale);
  return true;
}

double FromDecimal(const kairos_types_v1_Decimal& d) {
  return static_cast<double>(d.units) / std::pow(10.0, static_cast<double>(d.scale));
}

bool EncodeBody(const kairos_bridge_v1_Frame& frame, std::vector<uint8_t>* out) {
  kairos_bridge_v1_Frame body = frame;  // shallow: every field is inline
  body.sequence = 0;
  body.ack = 0;
  body.sent_time_us = 0;
  size_t size = 0;
  if (!pb_get_encoded_size(&size, kairos_bridge_v1_Frame_fields, &body)) return false;
  out->resize(size);
  pb_ostream_t stream = pb_ostream_from_buffer(out->data(), size);
  return pb_encode(&stream, kairos_bridge_v1_Frame_fields, &body);
}

namespace {

uint8_t* Put(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

template <typename T>
size_t VarintColumn(const T* v, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += VarintSize(static_cast<uint64_t>(v[i]));
  return bytes;
}

size_t Field(size_t payload) { return payload == 0 ? 0 : 1 + VarintSize(payload) + payload; }

template <typename T>
uint8_t* PutVarintColumn(uint8_t* p, uint32_t field, const T* v, size_t n, size_t payload) {
  if (payload == 0) return p;
  *p++ = static_cast<uint8_t>((field << 3) | 2);
  p = Put(p, payload);
  for (size_t i = 0; i < n; i++) p = Put(p, static_cast<uint64_t>(v[i]));
  return p;
}

uint8_t* PutDoubleColumn(uint8_t* p, uint32_t field, const double* v, size_t n) {
  if (n == 0) return p;
  *p++ = static_cast<uint8_t>((field << 3) | 2);
  p = Put(p, 8 * n);
  std::memcpy(p, v, 8 * n);  // little-endian fixed64, as on every target of this library
  return p + 8 * n;
}

}  // namespace

void EncodeTicksBody(const kairos_marketdata_v1_TickBatch& b, std::vector<uint8_t>* out) {
  const size_t sym = strnlen(b.symbol, sizeof(b.symbol));
  const size_t t_bytes = VarintColumn(b.time_msc, b.time_msc_count);
  const size_t f_bytes = VarintColumn(b.flags, b.flags_count);
  const size_t s_bytes = VarintColumn(b.sequence, b.sequence_count);
  const size_t batch = Field(sym) + Field(t_bytes) + Field(8 * b.bid_count) + Field(8 * b.ask_count) +
                       Field(8 * b.last_count) + Field(8 * b.volume_count) + Field(f_bytes) + Field(s_bytes);
  out->resize(1 + VarintSize(batch) + batch);
  uint8_t* p = out->data();
  *p++ = (kairos_bridge_v1_Frame_ticks_tag << 3) | 2;
  p = Put(p, batch);
  if (sym != 0) {
    *p++ = (1 << 3) | 2;
    p = Put(p, sym);
    std::memcpy(p, b.symbol, sym);
    p += sym;
  }
  p = PutVarintColumn(p, 2, b.time_msc, b.time_msc_count, t_bytes);
  p = PutDoubleColumn(p, 3, b.bid, b.bid_count);
  p = PutDoubleColumn(p, 4, b.ask, b.ask_count);
  p = PutDoubleColumn(p, 5, b.last, b.last_count);
  p = PutDoubleColumn(p, 6, b.volume, b.volume_count);
  p = PutVarintColumn(p, 7, b.flags, b.flags_count, f_bytes);
  PutVarintColumn(p, 8, b.sequence, b.sequence_count, s_bytes);
}

void AppendFrame(uint64_t sequence, uint64_t ack, int64_t sent_time_us, const uint8_t* body, size_t body_len,
                 std::vector<uint8_t>* out) {
  size_t header = 0;
  if (sequence != 0) header += 1 + VarintSize(sequence);
  if (ack != 0) header += 1 + VarintSize(ack);
  if (sent_time_us != 0) header += 1 + VarintSize(static_cast<uint64_t>(sent_time_us));
  PutVarint(header + body_len, out);
  if (sequence != 0) {
    out->push_back(0x08);
    PutVarint(sequence, out);
  }
  if (ack != 0) {
    out->push_back(0x10);
    PutVarint(ack, out);
  }
  if (sent_time_us != 0) {
    out->push_back(0x18);
    PutVarint(static_cast<uint64_t>(sent_time_us), out);
  }
  out->insert(out->end(), body, body + body_len);
}

ReadStatus ReadFrame(const uint8_t* data, size_t len, kairos_bridge_v1_Frame* frame, size_t* consumed) {
  uint64_t size = 0;
  size_t i = 0;
  for (int shift = 0;; shift += 7) {
    if (i >= len) return ReadStatus::kNeedMore;
    if (shift > 63) return ReadStatus::kMalformed;
    uint8_t b = data[i++];
    size |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) break;
  }
  if (size > KB_MAX_FRAME_BYTES) return ReadStatus::kOversized;
  if (len - i < size) return ReadStatus::kNeedMore;
  *frame = kairos_bridge_v1_Frame_init_zero;
  pb_istream_t stream = pb_istream_from_buffer(data + i, static_cast<size_t>(size));
  if (!pb_decode(&stream, kairos_bridge_v1_Frame_fields, frame)) return ReadStatus::kMalformed;
  *consumed = i + static_cast<size_t>(size);
  return ReadStatus::kFrame;
}

bool CommandToKb(const kairos_bridge_v1_OrderCommand& cmd, KbCommand* out, std::string* why) {
  std::memset(out, 0, sizeof(*out));
  out->command_id = cmd.command_id;
  const int32_t kind = EnumValue(cmd.kind);
  const int32_t side = EnumValue(cmd.side);
  const int32_t order_type = EnumValue(cmd.order_type);
  out->kind = kind;
  out->side = side;
  out->order_type = order_type;
  out->deviation_points = cmd.deviation_points;
  out->order_ticket = cmd.order_ticket;
  out->position_ticket = cmd.position_ticket;
  out->expiration_msc = cmd.expiration_msc;
  out->deadline_time_us = cmd.deadline_time_us;
  const struct {
    bool has;
    const kairos_types_v1_Decimal& d;
    double* dst;
    const char* name;
  } decimals[] = {
      {cmd.has_volume, cmd.volume, &out->volume, "volume"},
      {cmd.has_price, cmd.price, &out->price, "price"},
      {cmd.has_stop_limit_price, cmd.stop_limit_price, &out->stop_limit_price, "stop_limit_price"},
      {cmd.has_stop_loss, cmd.stop_loss, &out->stop_loss, "stop_loss"},
      {cmd.has_take_profit, cmd.take_profit, &out->take_profit, "take_profit"}};
  for (const auto& d : decimals) {
    if (!d.has) continue;
    if (d.d.scale > 18) {
      *why = std::string(d.name) + ": decimal scale above 18";
      return false;
    }
    if (d.d.units < 0) {
      *why = std::string(d.name) + ": negative";
      return false;
    }
    *d.dst = FromDecimal(d.d);
  }
  if (cmd.command_id == 0) {
    *why = "command_id is zero";
    return false;
  }
  if (Utf8ToUtf16(cmd.client_order_id, std::strlen(cmd.client_order_id), out->client_order_id, 32) != KB_OK) {
    *why = "client_order_id is not valid UTF-8";
    return false;
  }
  if (Utf8ToUtf16(cmd.symbol, std::strlen(cmd.symbol), out->symbol, 32) != KB_OK) {
    *why = "symbol is not valid UTF-8";
    return false;
  }
  switch (kind) {
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_PLACE:
      if (cmd.symbol[0] == 0) {
        *why = "PLACE without symbol";
        return false;
      }
      if (side != kairos_bridge_v1_Side_SIDE_BUY && side != kairos_bridge_v1_Side_SIDE_SELL) {
        *why = "PLACE without a valid side";
        return false;
      }
      if (order_type < kairos_bridge_v1_OrderType_ORDER_TYPE_MARKET ||
          order_type > kairos_bridge_v1_OrderType_ORDER_TYPE_STOP_LIMIT) {
        *why = "PLACE without a valid order_type";
        return false;
      }
      if (!(out->volume > 0)) {
        *why = "PLACE without a positive volume";
        return false;
      }
      if (order_type != kairos_bridge_v1_OrderType_ORDER_TYPE_MARKET && !(out->price > 0)) {
        *why = "pending PLACE without a price";
        return false;
      }
      if (cmd.client_order_id[0] == 0) {
        *why = "PLACE without client_order_id";
        return false;
      }
      break;
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_CANCEL:
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_MODIFY:
      if (cmd.order_ticket == 0) {
        *why = "CANCEL/MODIFY without order_ticket";
        return false;
      }
      break;
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_CLOSE_POSITION:
      if (cmd.position_ticket == 0) {
        *why = "CLOSE_POSITION without position_ticket";
        return false;
      }
      break;
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_QUERY_ORDER:
      if (cmd.order_ticket == 0 && cmd.client_order_id[0] == 0) {
        *why = "QUERY_ORDER without order_ticket or client_order_id";
        return false;
      }
      break;
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_MODIFY_POSITION:
      if (cmd.symbol[0] == 0 && cmd.position_ticket == 0) {
        *why = "MODIFY_POSITION without symbol or position_ticket";
        return false;
      }
      break;
    case kairos_bridge_v1_CommandKind_COMMAND_KIND_SNAPSHOT:
      break;
    default:
      *why = "unknown command kind " + std::to_string(kind);
      return false;
  }
  return true;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace kairos::bridge
