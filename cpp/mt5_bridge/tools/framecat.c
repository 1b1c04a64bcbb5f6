/* kairos-framecat (C, nanopb): the C twin of go/collector/cmd/kairos-framecat.
 *
 * Reads a stream of varint-length-delimited kairos.bridge.v1.Frame messages with the nanopb code the
 * MT5 DLL uses, prints the same JSON summary as the Go tool, and with -o writes every frame
 * re-encoded (which must equal the input byte for byte). `make demo` compares the two.
 * Usage: kairos-framecat [-o reencoded.bin] frames.bin */
#include <inttypes.h>
#include <math.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kairos/bridge/v1/bridge.pb.h"

#define MAX_SYMBOLS 64

typedef struct {
  char name[32];
  double point;
  int64_t ticks, first_time_msc, last_time_msc, min_bid_points, max_ask_points, spread_points_sum;
  uint64_t first_sequence, last_sequence;
} symbol_t;

typedef struct {
  const char *name;
  pb_size_t tag;
  int64_t count;
} body_t;

static body_t bodies[] = {
    {"hello", kairos_bridge_v1_Frame_hello_tag, 0},
    {"welcome", kairos_bridge_v1_Frame_welcome_tag, 0},
    {"heartbeat", kairos_bridge_v1_Frame_heartbeat_tag, 0},
    {"symbol_info", kairos_bridge_v1_Frame_symbol_info_tag, 0},
    {"ticks", kairos_bridge_v1_Frame_ticks_tag, 0},
    {"order_command", kairos_bridge_v1_Frame_order_command_tag, 0},
    {"order_result", kairos_bridge_v1_Frame_order_result_tag, 0},
    {"trade_transaction", kairos_bridge_v1_Frame_trade_transaction_tag, 0},
    {"account", kairos_bridge_v1_Frame_account_tag, 0},
    {"positions", kairos_bridge_v1_Frame_positions_tag, 0},
    {"error", kairos_bridge_v1_Frame_error_tag, 0},
};

static symbol_t symbols[MAX_SYMBOLS];
static int n_symbols;

static symbol_t *find_symbol(const char *name, int create) {
  for (int i = 0; i < n_symbols; i++) {
    if (strcmp(symbols[i].name, name) == 0) return &symbols[i];
  }
  if (!create || n_symbols == MAX_SYMBOLS) return NULL;
  symbol_t *s = &symbols[n_symbols++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  return s;
}

static int64_t to_points(double price, double point) { return (int64_t)floor(price / point + 0.5); }

static int add_ticks(const kairos_marketdata_v1_TickBatch *b, long frame) {
  symbol_t *s = find_symbol(b->symbol, 0);
  if (s == NULL || s->point <= 0) {
    fprintf(stderr, "kairos-framecat: frame %ld: ticks for \"%s\" before its SymbolInfo\n", frame, b->symbol);
    return 0;
  }
  pb_size_t n = b->time_msc_count;
  if (n == 0 || b->bid_count != n || b->ask_count != n || b->sequence_count != n) {
    fprintf(stderr, "kairos-framecat: frame %ld: malformed TickBatch for \"%s\"\n", frame, b->symbol);
    return 0;
  }
  if (s->ticks == 0) {
    s->first_time_msc = b->time_msc[0];
    s->first_sequence = b->sequence[0];
    s->min_bid_points = INT64_MAX;
    s->max_ask_points = INT64_MIN;
  }
  for (pb_size_t i = 0; i < n; i++) {
    int64_t bid = to_points(b->bid[i], s->point), ask = to_points(b->ask[i], s->point);
    if (bid < s->min_bid_points) s->min_bid_points = bid;
    if (ask > s->max_ask_points) s->max_ask_points = ask;
    s->spread_points_sum += ask - bid;
  }
  s->ticks += n;
  s->last_time_msc = b->time_msc[n - 1];
  s->last_sequence = b->sequence[n - 1];
  return 1;
}

static bool write_file(pb_ostream_t *stream, const pb_byte_t *buf, size_t count) {
  return fwrite(buf, 1, count, (FILE *)stream->state) == count;
}

int main(int argc, char **argv) {
  const char *out_path = NULL, *in_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out_path = argv[++i];
    } else {
      in_path = argv[i];
    }
  }
  if (in_path == NULL) {
    fprintf(stderr, "usage: kairos-framecat [-o reencoded.bin] frames.bin\n");
    return 2;
  }
  FILE *in = fopen(in_path, "rb");
  if (in == NULL) {
    perror(in_path);
    return 1;
  }
  fseek(in, 0, SEEK_END);
  long size = ftell(in);
  fseek(in, 0, SEEK_SET);
  pb_byte_t *data = malloc(size > 0 ? (size_t)size : 1);
  if (data == NULL || fread(data, 1, (size_t)size, in) != (size_t)size) {
    fprintf(stderr, "kairos-framecat: cannot read %s\n", in_path);
    return 1;
  }
  fclose(in);
  FILE *out = NULL;
  if (out_path != NULL && (out = fopen(out_path, "wb")) == NULL) {
    perror(out_path);
    return 1;
  }
  pb_ostream_t os = {write_file, out, SIZE_MAX, 0, NULL};

  kairos_bridge_v1_Frame *frame = malloc(sizeof *frame); /* ~14 KB: keep it off the stack */
  pb_istream_t is = pb_istream_from_buffer(data, (size_t)size);
  long frames = 0;
  int64_t ticks = 0;
  uint64_t last_sequence = 0;
  while (is.bytes_left > 0) {
    memset(frame, 0, sizeof *frame);
    if (!pb_decode_ex(&is, kairos_bridge_v1_Frame_fields, frame, PB_DECODE_DELIMITED)) {
      fprintf(stderr, "kairos-framecat: frame %ld: %s\n", frames + 1, PB_GET_ERROR(&is));
      return 1;
    }
    frames++;
    last_sequence = frame->sequence;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
      if (bodies[i].tag == frame->which_body) bodies[i].count++;
    }
    if (frame->which_body == kairos_bridge_v1_Frame_symbol_info_tag) {
      symbol_t *s = find_symbol(frame->body.symbol_info.symbol, 1);
      if (s == NULL) {
        fprintf(stderr, "kairos-framecat: more than %d symbols\n", MAX_SYMBOLS);
        return 1;
      }
      s->point = frame->body.symbol_info.point;
    } else if (frame->which_body == kairos_bridge_v1_Frame_ticks_tag) {
      if (!add_ticks(&frame->body.ticks, frames)) return 1;
      ticks += frame->body.ticks.time_msc_count;
    }
    if (out != NULL && !pb_encode_ex(&os, kairos_bridge_v1_Frame_fields, frame, PB_ENCODE_DELIMITED)) {
      fprintf(stderr, "kairos-framecat: re-encoding frame %ld: %s\n", frames, PB_GET_ERROR(&os));
      return 1;
    }
  }
  if (out != NULL) fclose(out);

  printf("{\n  \"frames\": %ld,\n  \"bodies\": {", frames);
  const char *sep = "";
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
    if (bodies[i].count == 0) continue;
    printf("%s\"%s\": %" PRId64, sep, bodies[i].name, bodies[i].count);
    sep = ", ";
  }
  printf("},\n  \"ticks\": %" PRId64 ",\n  \"last_frame_sequence\": %" PRIu64 ",\n  \"symbols\": {", ticks,
         last_sequence);
  sep = "";
  for (int i = 0; i < n_symbols; i++) {
    const symbol_t *s = &symbols[i];
    if (s->ticks == 0) continue;
    printf("%s\n    \"%s\": {\"ticks\": %" PRId64 ", \"first_time_msc\": %" PRId64
           ", \"last_time_msc\": %" PRId64 ", \"first_sequence\": %" PRIu64 ", \"last_sequence\": %" PRIu64
           ", \"min_bid_points\": %" PRId64 ", \"max_ask_points\": %" PRId64
           ", \"spread_points_sum\": %" PRId64 "}",
           sep, s->name, s->ticks, s->first_time_msc, s->last_time_msc, s->first_sequence, s->last_sequence,
           s->min_bid_points, s->max_ask_points, s->spread_points_sum);
    sep = ",";
  }
  printf("\n  }\n}\n");
  free(frame);
  free(data);
  return 0;
}
