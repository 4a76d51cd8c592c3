// The origin all three gateways forward to: a fixed small answer.
export default {
  fetch() {
    return new Response("ok\n", { headers: { "content-type": "text/plain" } });
  },
};
