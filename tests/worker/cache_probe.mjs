// Another Worker of the same zone, for tests/worker: it reads and writes the Cache API as every
// Worker of a zone can. PUT /?url=U stores the request body under U (for 10 minutes);
// GET /?url=U answers what is stored there, 404 when nothing is.
export default {
  async fetch(request) {
    const target = new URL(request.url).searchParams.get("url");
    if (request.method === "PUT") {
      const body = await request.arrayBuffer();
      await caches.default.put(target, new Response(body, { headers: { "cache-control": "max-age=600" } }));
      return new Response("stored\n");
    }
    return (await caches.default.match(target)) ?? new Response("nothing\n", { status: 404 });
  },
};
