// A child sends [42, null, "hello"] through a pipe; the parent receives it, as
// in Python's multiprocessing docs ("Exchanging objects between processes").
// Run: deno run --allow-read --allow-write --allow-run --allow-net examples/pipe.ts
import { type Connection, Pipe, Process } from "../mod.ts";

/** Sends one message and closes its end. */
export async function f(conn: Connection): Promise<void> {
  await conn.send([42, null, "hello"]);
  conn.close();
}

if (import.meta.main) {
  const [parentConn, childConn] = Pipe();
  const p = new Process({ target: f, args: [childConn] });
  await p.start();
  console.log(await parentConn.recv()); // [ 42, null, "hello" ]
  await p.join();
  parentConn.close();
}
