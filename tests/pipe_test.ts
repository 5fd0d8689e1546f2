import assert from "node:assert/strict";
import {
  AuthenticationError,
  BufferTooShort,
  connect,
  type Connection,
  DataCloneError,
  Empty,
  EOFError,
  listen,
  Pipe,
  Queue,
  type StartMethod,
  TimeoutError,
  ValueError,
} from "../mod.ts";
import {
  connectAndSend,
  echo,
  echoBytes,
  echoInGrandchild,
  echoViaMessage,
  holdOpen,
  sendAndReport,
  sendHuge,
  sendSequence,
  sendThenExit,
} from "./testdata/queue_targets.ts";
import { started } from "./testdata/helpers.ts";
import { PART_MIN, seal } from "../_codec.ts";

const METHODS: StartMethod[] = ["process", "worker"];
const SMALL = [42, null, "hello"];

Deno.test("Pipe() carries messages both ways in one program, boundaries kept", async () => {
  const [a, b] = Pipe();
  const value = {
    map: new Map([[1, "one"]]),
    set: new Set([1n]),
    date: new Date(0),
    bytes: new Uint8Array([1, 2]),
  };
  await a.send(value);
  await a.sendBytes(new Uint8Array(0));
  await a.sendBytes(new Uint8Array([9]));
  await b.send("back");
  assert.deepEqual(await b.recv(), value);
  assert.equal((await b.recvBytes()).length, 0);
  assert.deepEqual(await b.recvBytes(), new Uint8Array([9]));
  assert.equal(await a.recv(), "back");
  a.close();
  b.close();
});

Deno.test("Connection.recv() rejects with EOFError once the peer is closed and all was read", async () => {
  const [a, b] = Pipe();
  await a.send(1);
  await a.send(2);
  a.close();
  assert.equal(await b.recv(), 1);
  assert.equal(await b.poll(), true);
  assert.equal(await b.recv(), 2);
  await assert.rejects(b.recv(), EOFError);
  await assert.rejects(b.recvBytes(), EOFError);
  b.close();
});

Deno.test("Pipe(false) refuses the wrong direction with ValueError", async () => {
  const [reader, writer] = Pipe(false);
  assert.equal(reader.readable, true);
  assert.equal(reader.writable, false);
  assert.equal(writer.readable, false);
  await assert.rejects(reader.send(1), ValueError);
  await assert.rejects(writer.recv(), ValueError);
  await assert.rejects(writer.poll(), ValueError);
  await writer.send(1);
  assert.equal(await reader.recv(), 1);
  reader.close();
  writer.close();
});

Deno.test("Connection.recvBytesInto() rejects with BufferTooShort carrying the message", async () => {
  const [a, b] = Pipe();
  await a.sendBytes(new Uint8Array([1, 2, 3, 4, 5]));
  const error = await b.recvBytesInto(new Uint8Array(3)).catch((e) => e);
  assert.ok(error instanceof BufferTooShort);
  assert.deepEqual(error.data, new Uint8Array([1, 2, 3, 4, 5]));
  await a.sendBytes(new Uint8Array([1, 2, 3, 4, 5]), 1, 3);
  const buf = new Uint8Array(4);
  assert.equal(await b.recvBytesInto(buf, 1), 3);
  assert.deepEqual(buf, new Uint8Array([0, 2, 3, 4]));
  a.close();
  b.close();
});

Deno.test("Connection.recvBytes() rejects and closes when a message is over maxlength", async () => {
  const [a, b] = Pipe();
  await a.sendBytes(new Uint8Array(10));
  await assert.rejects(b.recvBytes(5), ValueError);
  assert.equal(b.closed, true);
  await assert.rejects(a.recv(), EOFError);
  a.close();
});

Deno.test("Connection.send() rejects with DataCloneError and sends nothing", async () => {
  const [a, b] = Pipe();
  await assert.rejects(a.send({ f: () => 1 } as unknown), DataCloneError);
  await a.send("after");
  assert.equal(await b.recv(), "after");
  assert.equal(await b.poll(), false);
  a.close();
  b.close();
});

Deno.test("Connection.recv() rejects with TimeoutError, or with the abort reason", async () => {
  const [a, b] = Pipe();
  await assert.rejects(b.recv({ timeout: 5 }), TimeoutError);
  const controller = new AbortController();
  const pending = b.recv({ signal: controller.signal });
  controller.abort(new RangeError("stop"));
  await assert.rejects(pending, RangeError);
  await assert.rejects(b.recv({ signal: AbortSignal.abort(new SyntaxError("x")) }), SyntaxError);
  // Nothing is lost by the given-up waits.
  await a.send("kept");
  assert.equal(await b.recv(), "kept");
  a.close();
  b.close();
});

Deno.test("Connection.poll() waits for a message up to its timeout", async () => {
  const [a, b] = Pipe();
  assert.equal(await b.poll(0), false);
  assert.equal(await b.poll(5), false);
  const polled = b.poll(10_000);
  await a.send(1);
  assert.equal(await polled, true);
  a.close();
  b.close();
});

Deno.test("Connection.close() makes later use fail with ValueError, and close() again is a no-op", async () => {
  const [a, b] = Pipe();
  a.close();
  a.close();
  await assert.rejects(a.send(1), ValueError);
  await assert.rejects(a.recv(), ValueError);
  b.close();
});

Deno.test("Connection.send() waits while the reader is far behind (backpressure)", async () => {
  const [a, b] = Pipe();
  const mib = new Uint8Array(1 << 20);
  let sent = 0;
  let blocked: Promise<void> | undefined;
  for (let i = 0; i < 64; i++) {
    const pending = a.sendBytes(mib);
    let settled = false;
    pending.then(() => settled = true);
    await Promise.resolve();
    await Promise.resolve();
    if (!settled) {
      blocked = pending;
      break;
    }
    sent++;
  }
  assert.ok(blocked !== undefined, "every send settled at once: nothing held the writer back");
  assert.ok(sent < 64);
  for (let i = 0; i <= sent; i++) await b.recvBytes();
  await blocked;
  a.close();
  b.close();
});

for (const method of METHODS) {
  Deno.test(`Pipe() round trips with a "${method}" child, handles and bytes included`, async () => {
    const [a, b] = Pipe();
    await using p = await started(echo, [b], method);
    assert.equal(b.closed, true, "the moved end is detached here");
    await assert.rejects(b.send(1), ValueError);
    for (let i = 0; i < 100; i++) {
      await a.send([i, ...SMALL]);
      assert.deepEqual(await a.recv(), [i, ...SMALL]);
    }
    const [c, d] = Pipe();
    await a.send(new Map([["end", d]]));
    const back = await a.recv() as Map<string, Connection>;
    const d2 = back.get("end")!;
    await c.send("through a moved end, twice");
    assert.equal(await d2.recv(), "through a moved end, twice");
    await a.send(null);
    await assert.rejects(a.recv(), EOFError);
    await p.join();
    assert.equal(p.exitCode, 0);
    a.close();
    c.close();
    d2.close();
  });

  Deno.test(`Connection.send() of sealed bytes reaches a "${method}" child whole, in order`, async () => {
    const [a, b] = Pipe();
    await using p = await started(echo, [b], method);
    // Sealed bytes go into the frame from where they are (see encodeParts).
    const big = seal(new Uint8Array(PART_MIN * 3).map((_, i) => i * 7));
    const small = seal(new Uint8Array(PART_MIN).fill(5));
    const messages = [[0, big], [1, small, "x", big], [2, { small }]];
    // Sent together, so that they share a write.
    await Promise.all(messages.map((message) => a.send(message)));
    for (const message of messages) assert.deepEqual(await a.recv(), message);
    await a.send(null);
    await assert.rejects(a.recv(), EOFError);
    await p.join();
    assert.equal(p.exitCode, 0);
    a.close();
  });

  Deno.test(`Connection.sendBytes() keeps message boundaries with a "${method}" child`, async () => {
    const [a, b] = Pipe();
    await using p = await started(echoBytes, [b], method);
    const sizes = [0, 1, 100, 70_000, 1 << 20, 0];
    for (const size of sizes) {
      const bytes = new Uint8Array(size).map((_, i) => i & 0xff);
      await a.sendBytes(bytes);
    }
    for (const size of sizes) {
      const got = await a.recvBytes();
      assert.equal(got.length, size);
      if (size > 0) assert.equal(got[size - 1], (size - 1) & 0xff);
    }
    a.close();
    await p.join();
    assert.equal(p.exitCode, 0);
  });

  Deno.test(`Connection.sendBytes() in a "${method}" child waits while this side does not read`, async () => {
    const [a, b] = Pipe();
    await using progress = new Queue<number>();
    const n = 64;
    await using p = await started(sendAndReport, [b, n, 1 << 20, progress], method);
    // Without reading, the child gets only as far as the buffers allow
    // (a few MiB), far from all 64 MiB: it stalls, and reports stop coming.
    let sent = 0;
    for (;;) {
      try {
        sent = await progress.get({ timeout: 1000 });
      } catch (error) {
        if (error instanceof Empty) break;
        throw error;
      }
      if (sent === n) break;
    }
    assert.ok(sent < n / 2, `the child sent ${sent} MiB to a reader that read nothing`);
    for (let i = 0; i < n; i++) assert.equal((await a.recvBytes()).length, 1 << 20);
    await assert.rejects(a.recv(), EOFError);
    await p.join();
    assert.equal(p.exitCode, 0);
    a.close();
  });

  Deno.test(`Connection.recv() sees EOF when a "${method}" child closes its end, in order`, async () => {
    const [reader, writer] = Pipe(false);
    await using p = await started(sendSequence, [writer, 1000], method);
    for (let i = 0; i < 1000; i++) assert.equal(await reader.recv(), i);
    await assert.rejects(reader.recv(), EOFError);
    await p.join();
    reader.close();
  });

  Deno.test(`Connection.recv() sees EOF when a "${method}" child holding the other end is killed`, async () => {
    const [a, b] = Pipe();
    await using p = await started(holdOpen, [b], method);
    assert.equal(await a.recv(), "ready");
    p.kill();
    await assert.rejects(a.recv(), EOFError);
    await p.join();
    a.close();
  });

  Deno.test(`Connection ends travel inside messages to a "${method}" child`, async () => {
    const [carrier, carrierChild] = Pipe();
    const [a, b] = Pipe();
    await using p = await started(echoViaMessage, [carrierChild], method);
    await carrier.send(b);
    assert.equal(b.closed, true);
    b.close(); // a no-op on a moved end
    await a.send("via message");
    assert.equal(await a.recv(), "via message");
    await a.send(null);
    await p.join();
    assert.equal(p.exitCode, 0);
    a.close();
    carrier.close();
  });

  for (const inner of METHODS) {
    Deno.test(`Connection ends reach a "${inner}" grandchild through a "${method}" child`, async () => {
      const [a, b] = Pipe();
      await using p = await started(echoInGrandchild, [b, inner], method);
      await a.send(SMALL);
      assert.deepEqual(await a.recv(), SMALL);
      await a.send(null);
      await assert.rejects(a.recv(), EOFError);
      await p.join();
      assert.equal(p.exitCode, 0);
      a.close();
    });
  }
}

Deno.test("Connection.recvBytes() takes a 256 MiB message from a child", async () => {
  const [a, b] = Pipe();
  const size = 256 << 20;
  await using p = await started(sendHuge, [b, size], "process");
  const got = await a.recvBytes();
  assert.equal(got.length, size);
  assert.equal(got[0], 1);
  assert.equal(got[size - 1], 2);
  await a.send("done");
  await p.join();
  assert.equal(p.exitCode, 0);
  a.close();
});

Deno.test("listen() and connect() talk over a Unix socket and TCP", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    for (const address of [`${dir}/l.sock`, { hostname: "127.0.0.1", port: 0 }]) {
      await using listener = listen(address, { authkey: "key" });
      const [client, server] = await Promise.all([
        connect(listener.address, { authkey: "key" }),
        listener.accept(),
      ]);
      await client.send(SMALL);
      assert.deepEqual(await server.recv(), SMALL);
      await server.sendBytes(new Uint8Array([5]));
      assert.deepEqual(await client.recvBytes(), new Uint8Array([5]));
      client.close();
      await assert.rejects(server.recv(), EOFError);
      server.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("connect() with a wrong authkey fails with AuthenticationError on both sides", async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0 }, { authkey: "right" });
  const [client, server] = await Promise.allSettled([
    connect(listener.address, { authkey: "wrong" }),
    listener.accept(),
  ]);
  assert.equal(client.status, "rejected");
  assert.ok(client.reason instanceof AuthenticationError);
  assert.equal(server.status, "rejected");
  assert.ok(server.reason instanceof AuthenticationError);
  const [noKey, server2] = await Promise.allSettled([connect(listener.address), listener.accept()]);
  assert.ok(noKey.status === "rejected" && noKey.reason instanceof AuthenticationError);
  assert.ok(server2.status === "rejected" && server2.reason instanceof AuthenticationError);
});

Deno.test("listen() accepts a connection from an unrelated child process", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    await using listener = listen(`${dir}/c.sock`, { authkey: "k" });
    await using p = await started(connectAndSend, [`${dir}/c.sock`, "k", { hi: 1 }], "process");
    const conn = await listener.accept();
    assert.deepEqual(await conn.recv(), { hi: 1 });
    await conn.send("bye");
    await assert.rejects(conn.recv(), EOFError);
    conn.close();
    await p.join();
    assert.equal(p.exitCode, 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("Connection.recv() fails on a corrupt stream, and other connections keep working", async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0 });
  const address = listener.address as { hostname: string; port: number };
  // A raw client: the handshake's mode byte, then garbage frames.
  const raw = await Deno.connect(address);
  const accepted = listener.accept();
  const modeFrame = new Uint8Array(5);
  new DataView(modeFrame.buffer).setUint32(0, 1, true);
  await raw.write(modeFrame);
  const bad = await accepted;
  const garbage = new Uint8Array([3, 0, 0, 0, 1, 0xff, 0xee]); // an object frame that is not our codec
  await raw.write(garbage);
  const [good, goodServer] = await Promise.all([connect(address), listener.accept()]);
  await assert.rejects(bad.recv(), TypeError);
  await good.send("still fine");
  assert.equal(await goodServer.recv(), "still fine");
  // A frame whose length is over the limit closes that connection with a clear error.
  await raw.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
  await assert.rejects(
    bad.recv(),
    (error: Error) => error instanceof EOFError && /limit/.test(String(error.cause)),
  );
  bad.close();
  raw.close();
  good.close();
  goodServer.close();
});

for (const method of METHODS) {
  Deno.test(`Pipe: messages sent just before Deno.exit() arrive (${method})`, async () => {
    const [a, b] = Pipe();
    await using p = await started(sendThenExit, [b, 5_000], method);
    await a.send("go");
    for (let i = 0; i < 5_000; i++) assert.equal(await a.recv(), i);
    await assert.rejects(a.recv(), EOFError);
    await p.join();
    assert.equal(p.exitCode, 7);
    a.close();
  });
}
