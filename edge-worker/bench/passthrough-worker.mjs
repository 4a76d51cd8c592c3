// The floor: forward every request to the ORIGIN service untouched.
export default {
  fetch(request, env) {
    return env.ORIGIN.fetch(request);
  },
};
