// Fuzzes what the bridge does with bytes from the execution service: split the stream into
// varint-delimited frames (ReadFrame, 1 MiB limit), decode each with nanopb, and turn order commands
// into the KbCommand the EA reads (CommandToKb). Any crash, sanitizer report or broken invariant
// (a string without its NUL, a frame that does not survive re-encoding) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "codec.h"

namespace kb = kairos::bridge;

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

bool Terminated(const kb_char16* s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == 0) return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* frame = new kairos_bridge_v1_Frame;
  static auto* again = new kairos_bridge_v1_Frame;
  size_t off = 0;
  for (int frames = 0; off < size && frames < 64; frames++) {
    size_t used = 0;
    const kb::ReadStatus st = kb::ReadFrame(data + off, size - off, frame, &used);
    if (st != kb::ReadStatus::kFrame) break;
    Require(used > 0 && used <= size - off);
    off += used;
    if (frame->which_body != kairos_bridge_v1_Frame_order_command_tag) continue;
    KbCommand cmd;
    std::string why;
    if (kb::CommandToKb(frame->body.order_command, &cmd, &why)) {
      Require(Terminated(cmd.client_order_id, 32) && Terminated(cmd.symbol, 32));
      Require(cmd.command_id == frame->body.order_command.command_id && cmd.command_id != 0);
    } else {
      Require(!why.empty());
    }
    // What the bridge decoded re-encodes (it resends DUPLICATE results built from such frames).
    std::vector<uint8_t> body, out;
    Require(kb::EncodeBody(*frame, &body));
    kb::AppendFrame(frame->sequence, frame->ack, frame->sent_time_us, body.data(), body.size(), &out);
    size_t used2 = 0;
    Require(kb::ReadFrame(out.data(), out.size(), again, &used2) == kb::ReadStatus::kFrame &&
            used2 == out.size());
    Require(again->body.order_command.command_id == frame->body.order_command.command_id);
    Require(std::strcmp(again->body.order_command.client_order_id,
                        frame->body.order_command.client_order_id) == 0);
  }
  return 0;
}
