/**
 * A field whose declared length runs past the end of its frame is refused where it is, as
 * `truncated`, naming that field: whether it is the last field or not, and however far it runs.
 * (Without the check, the decoder would read a short body and blame the next field, or report a
 * negative number of trailing bytes.)
 */

import assert from "node:assert/strict";
import { defineProtocol, FrameError } from "../../lib/wire/mod.ts";

const protocol = defineProtocol("Fields", {
  two: { code: 0x01, label: "Two", fields: { first: "bytes", second: "text" } },
});

/** The message with `field`'s length prefix raised by `extra` (its body unchanged). */
function lengthened(field: "first" | "second", extra: number): Uint8Array {
  const bytes = protocol.encode("two", { first: Uint8Array.of(1, 2, 3), second: "abc" });
  const at = field === "first" ? 1 : 1 + 4 + 3;
  const view = new DataView(bytes.buffer);
  view.setUint32(at, view.getUint32(at) + extra);
  return bytes;
}

Deno.test("codec: a field longer than the rest of its frame is truncated, naming that field", () => {
  // `first` is followed by 7 more bytes (second's length and body): 8 more runs past the frame.
  const cases = [["first", [8, 1000]], ["second", [1, 4, 1000]]] as const;
  for (const [field, extras] of cases) {
    for (const extra of extras) {
      assert.throws(() => protocol.decode(lengthened(field, extra)), (err: unknown) => {
        assert.ok(err instanceof FrameError, String(err));
        assert.equal(err.kind, "truncated", `${field} +${extra}: ${err.message}`);
        assert.equal(err.message, `Truncated Fields two: field ${field}`);
        return true;
      });
    }
  }
});
