/** `auditsink start`: the embedded sink (packages/local startEmbeddedSink), until SIGINT or SIGTERM. */
import { type EmbeddedSink, type EmbeddedSinkOptions, startEmbeddedSink } from "@auditsink/local";

export async function start(options: EmbeddedSinkOptions): Promise<EmbeddedSink> {
  const sink = await startEmbeddedSink(options);
  const stop = () => {
    void sink.close().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return sink;
}
