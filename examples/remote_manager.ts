// A manager that serves a shared queue over TCP, and a client program that
// joins it with the key (Python's "Using a remote manager").
// Run: deno run --allow-read --allow-write --allow-run --allow-net examples/remote_manager.ts
// The server starts the client as a separate program; from another machine, run
//   deno run --allow-net examples/remote_manager.ts client <host> <port>
// with the same key (and serve on a reachable address, with tls, instead of 127.0.0.1).
import { Manager, type QueueProxy } from "../mod.ts";

const AUTHKEY = "change this key";

/** Joins the manager at host:port and puts three jobs on its queue. */
export async function client(hostname: string, port: number): Promise<void> {
  await using remote = await Manager.connect({ hostname, port }, { authkey: AUTHKEY });
  const jobs = await remote.lookup<QueueProxy<string>>("jobs");
  for (let i = 1; i <= 3; i++) await jobs.put(`job ${i} from pid ${Deno.pid}`);
}

/** Serves a queue named "jobs", runs a client program, and prints what it put. */
export async function server(): Promise<void> {
  await using manager = await Manager.start({
    address: { hostname: "127.0.0.1", port: 0 },
    authkey: AUTHKEY,
  });
  const { hostname, port } = manager.address as { hostname: string; port: number };
  const jobs = await manager.Queue<string>();
  await manager.expose("jobs", jobs);
  console.log(`serving on ${hostname}:${port}`);
  const program = new Deno.Command(Deno.execPath(), {
    args: ["run", `--allow-net=${hostname}`, import.meta.filename!, "client", hostname, `${port}`],
  });
  const status = await program.output();
  if (!status.success) throw new Error("the client failed");
  for (let i = 0; i < 3; i++) console.log(await jobs.get({ timeout: 5000 }));
}

if (import.meta.main) {
  if (Deno.args[0] === "client") await client(Deno.args[1]!, Number(Deno.args[2]));
  else await server();
}
