// A live feed in React on @sacred/client/react, bundled by esbuild
// (examples/browser/build.mjs). Two components show the same channel and
// share its subscription; StrictMode mounts everything twice on purpose
// (the hooks hold a channel, so the second mount keeps the first's
// subscription rather than asking for a duplicate).
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { useSacred, useSubscription } from "@sacred/client/react";

const params = new URLSearchParams(location.search);
const hub = params.get("hub") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const channel = params.get("channel") ?? "news";

function Feed({ client }) {
  const { publications, state } = useSubscription(client, channel, { keep: 20 });
  return (
    <section>
      <h2>#{channel} <small id="subscription">{state}</small></h2>
      <ul id="feed">
        {publications.map((pub) => <li key={String(pub.offset)}>{pub.data?.text ?? JSON.stringify(pub.data)}</li>)}
      </ul>
    </section>
  );
}

function Counter({ client }) {
  const { publications } = useSubscription(client, channel);
  return <p>Seen since the page opened: <span id="count">{publications.length}</span></p>;
}

function Composer({ client }) {
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    try {
      await client.publish(channel, { text });
      setText("");
      setError(null);
    } catch (err) {
      setError(err.message);
    }
  };
  return (
    <form id="form" onSubmit={submit}>
      <input id="text" value={text} onChange={(event) => setText(event.target.value)} placeholder="say something" />{" "}
      <button>Publish</button> {error && <span role="alert">{error}</span>}
    </form>
  );
}

function App() {
  const { client, state } = useSacred(hub, { name: "react-page", kind: "app" });
  const [showFeed, setShowFeed] = useState(true);
  return (
    <main data-state={state}>
      <h1>Sacred + React <small id="state">{state}</small></h1>
      <label><input id="show" type="checkbox" checked={showFeed} onChange={(event) => setShowFeed(event.target.checked)} /> show the feed</label>
      {client && (
        <>
          {showFeed && <Feed client={client} />}
          <Counter client={client} />
          <Composer client={client} />
        </>
      )}
    </main>
  );
}

createRoot(document.getElementById("root")).render(<StrictMode><App /></StrictMode>);
