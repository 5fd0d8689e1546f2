// A thread that puts or takes numbered records through a SharedRing (ring_test.ts).
import { SharedRing } from "../../_ring.ts";
import { recordOf } from "./ring_records.ts";

interface Order {
  memory: SharedArrayBuffer;
  role: "put" | "take";
  owner: number;
  count: number;
  /** A loopback port to connect to first: the test sees the worker's end as EOF. */
  port?: number;
}

const scope = self as unknown as {
  onmessage: (event: MessageEvent<Order>) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = async (event) => {
  const { memory, role, owner, count, port } = event.data;
  const ring = new SharedRing(memory);
  if (port !== undefined) {
    await Deno.connect({ hostname: "127.0.0.1", port });
    scope.postMessage("connected");
  }
  if (role === "put") {
    for (let i = 0; i < count; i++) {
      const record = recordOf(owner, i);
      while (!ring.tryPut(record, owner)) await ring.waitForPut(ring.epoch, 1);
    }
    scope.postMessage("done");
    return;
  }
  const got: Uint8Array[] = [];
  while (got.length < count) {
    const epoch = ring.epoch;
    const bytes = ring.tryTake(owner);
    if (!bytes) await ring.waitForPut(epoch, 50);
    else got.push(bytes);
  }
  scope.postMessage(got);
};
