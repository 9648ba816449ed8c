package chat

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

// TestBackoffRuleIsTheServers: Config, configs (nats.inbound.backoff and max_deliver) and a real
// NATS server refuse the same backoff lengths: more steps than max deliveries, and any number
// when the deliveries are unlimited (-1, which Config allows and configs does not: it refuses
// max_deliver -1 on its own, not the backoff).
func TestBackoffRuleIsTheServers(t *testing.T) {
	e := newEnv(t)
	ctx := ctxFor(t)
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "RULE", Subjects: []string{"rule.>"}}); err != nil {
		t.Fatal(err)
	}
	tooLong := server.NewJSConsumerMaxDeliverBackoffError().ErrCode
	for _, maxDeliver := range []int{-1, 1, 2, 6} {
		for steps := 0; steps <= 8; steps++ {
			backoff := make([]time.Duration, steps)
			for i := range backoff {
				backoff[i] = time.Duration(i+1) * time.Second
			}

			_, err := e.js.CreateConsumer(ctx, "RULE", jetstream.ConsumerConfig{
				Durable: fmt.Sprintf("rule_%d_%d", maxDeliver+1, steps), AckPolicy: jetstream.AckExplicitPolicy,
				MaxDeliver: maxDeliver, BackOff: backoff,
			})
			var apiErr *jetstream.APIError
			if err != nil && (!errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.ErrorCode(tooLong)) {
				t.Fatalf("max deliver %d, %d steps: the server refused for another reason: %v", maxDeliver, steps, err)
			}
			serverRefuses := err != nil

			_, err = Config{MaxDeliver: maxDeliver, Backoff: backoff}.withDefaults()
			chatRefuses := err != nil && strings.Contains(err.Error(), "chat: backoff has")

			c := configs.Default()
			c.NATS.Inbound.MaxDeliver = maxDeliver
			c.NATS.Inbound.Backoff = make([]configs.Duration, steps)
			for i, b := range backoff {
				c.NATS.Inbound.Backoff[i] = configs.Duration{Duration: b}
			}
			err = c.Validate()
			configsRefuses := err != nil && strings.Contains(err.Error(), "nats.inbound.backoff: has")

			if chatRefuses != serverRefuses || configsRefuses != serverRefuses {
				t.Errorf("max deliver %d, %d steps: the server refuses: %v, chat.Config: %v, configs: %v",
					maxDeliver, steps, serverRefuses, chatRefuses, configsRefuses)
			}
		}
	}
}
