import Fastify from "fastify"; Fastify().get("/", async () => "app2").listen({ port: 8001 });
