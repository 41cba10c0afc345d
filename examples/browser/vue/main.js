// A live feed in Vue on @sacred/client/vue, bundled by esbuild
// (examples/browser/build.mjs). Render functions, so the runtime-only build
// of Vue is enough; two components show the same channel and share its
// subscription.
import { createApp, defineComponent, h, ref } from "vue";
import { useSacred, useSubscription } from "@sacred/client/vue";

const params = new URLSearchParams(location.search);
const hub = params.get("hub") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const channel = params.get("channel") ?? "news";

const Feed = defineComponent({
  props: { client: Object },
  setup(props) {
    const { publications, state } = useSubscription(() => props.client, channel, { keep: 20 });
    return () => h("section", [
      h("h2", [`#${channel} `, h("small", { id: "subscription" }, state.value)]),
      h("ul", { id: "feed" }, publications.value.map((pub) => h("li", { key: String(pub.offset) }, pub.data?.text ?? JSON.stringify(pub.data)))),
    ]);
  },
});

const Counter = defineComponent({
  props: { client: Object },
  setup(props) {
    const { publications } = useSubscription(() => props.client, channel);
    return () => h("p", ["Seen since the page opened: ", h("span", { id: "count" }, String(publications.value.length))]);
  },
});

const Composer = defineComponent({
  props: { client: Object },
  setup(props) {
    const text = ref("");
    const error = ref(null);
    const submit = async (event) => {
      event.preventDefault();
      try {
        await props.client.publish(channel, { text: text.value });
        text.value = "";
        error.value = null;
      } catch (err) {
        error.value = err.message;
      }
    };
    return () => h("form", { id: "form", onSubmit: submit }, [
      h("input", { id: "text", value: text.value, onInput: (event) => { text.value = event.target.value; }, placeholder: "say something" }),
      " ",
      h("button", "Publish"),
      error.value ? h("span", { role: "alert" }, error.value) : null,
    ]);
  },
});

const App = defineComponent({
  setup() {
    const { client, state } = useSacred(hub, { name: "vue-page", kind: "app" });
    const showFeed = ref(true);
    return () => h("main", { "data-state": state.value }, [
      h("h1", ["Sacred + Vue ", h("small", { id: "state" }, state.value)]),
      h("label", [h("input", { id: "show", type: "checkbox", checked: showFeed.value, onChange: (event) => { showFeed.value = event.target.checked; } }), " show the feed"]),
      ...(client.value ? [
        showFeed.value ? h(Feed, { client: client.value }) : null,
        h(Counter, { client: client.value }),
        h(Composer, { client: client.value }),
      ] : []),
    ]);
  },
});

createApp(App).mount("#root");
