package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/longlink/longlink/auth"
	"math"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// Input limits that are part of the contract, not tuning.
const (
	// maxNameLen bounds group and app names, which follow the device id
	// (the token's sub, auth.MaxDeviceLen bytes); device ids themselves
	// are checked with auth.ValidDevice.
	maxNameLen = auth.MaxDeviceLen
	// maxIDLen bounds a push's message id, sent with every copy of the
	// push as PUSH meta "id".
	maxIDLen = 128
	// maxReasonLen bounds a kick's reason, sent as KICK meta "reason".
	maxReasonLen = 256
	// maxTokenGroups bounds the groups a token names: the login token
	// verifier refuses more (auth.MaxGroups).
	maxTokenGroups = auth.MaxGroups
	// maxPooledBody is the largest body buffer returned to bodyPool, so
	// that one large request does not pin a megabyte per pooled buffer.
	maxPooledBody = 64 << 10
)

// bodyPool recycles request body buffers. Bodies are decoded with
// sonic.ConfigStd, which copies every string it decodes, so no decoded
// value refers to a buffer once it is back in the pool.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decode reads r's body, at most s.maxBody bytes, and decodes the JSON
// object in it into v, a pointer to a request struct. Unknown fields are
// ignored. An empty body is an error unless optional, when decode leaves v
// alone.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBody {
			bodyPool.Put(buf)
		}
	}()

	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.maxBody)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &requestError{
				status: http.StatusRequestEntityTooLarge,
				err:    fmt.Errorf("the request body is over the limit of %d bytes", tooLarge.Limit),
			}
		}
		return badRequest("reading the request body: %w", err)
	}
	body := bytes.TrimSpace(buf.Bytes())
	switch {
	case len(body) == 0 && optional:
		return nil
	case len(body) == 0:
		return badRequest("the request body is empty; send a JSON object")
	case body[0] != '{':
		return badRequest("the request body must be a JSON object")
	case !utf8.Valid(body):
		// JSON must be UTF-8 (RFC 8259). Decoders quietly turn bad bytes
		// into U+FFFD, which would corrupt a push body sent as "data".
		return badRequest("the request body is not valid UTF-8; send binary data as data_base64")
	}
	if err := sonic.ConfigStd.Unmarshal(body, v); err != nil {
		return badRequest("%s", describeJSONError(body, v, err))
	}
	return nil
}

// describeJSONError explains why body does not decode into v. Sonic's
// errors give a byte offset and an excerpt of the input, and report a
// wrong type for a bool as a syntax error; encoding/json's name the field
// and both types. So on this rare path the body is decoded once more, with
// encoding/json, for the message alone.
func describeJSONError(body []byte, v any, sonicErr error) string {
	err := json.Unmarshal(body, reflect.New(reflect.TypeOf(v).Elem()).Interface())
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		// Field is a dotted path that includes embedded structs' names;
		// request bodies are flat, so the last element is the JSON key.
		field := typ.Field[strings.LastIndexByte(typ.Field, '.')+1:]
		return fmt.Sprintf("%s: expected %s, found %s", field, jsonKind(typ.Type), typ.Value)
	default:
		// encoding/json accepts what sonic refused. Sonic's first line
		// says where.
		msg, _, _ := strings.Cut(sonicErr.Error(), "\n")
		return "malformed JSON: " + msg
	}
}

// jsonKind names what JSON value decodes into t, for the kinds the
// request bodies use (encoding/json reports a pointer field's element type).
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	default:
		return "an object"
	}
}

// messageBody is the JSON body of the push calls, without devices.
type messageBody struct {
	Biz        int64   `json:"biz"`
	Data       *string `json:"data"`
	DataBase64 *string `json:"data_base64"`
	ID         string  `json:"id"`
	Ack        bool    `json:"ack"`
}

// pushBody is the JSON body of POST /v1/push.
type pushBody struct {
	Devices []string `json:"devices"`
	messageBody
}

// message checks b and builds the Message. A missing data is an empty body.
func (b *messageBody) message() (Message, error) {
	if b.Biz < 0 || b.Biz > math.MaxUint16 {
		return Message{}, badRequest("biz must be from 0 to 65535, got %d", b.Biz)
	}
	if p := textProblem(b.ID, maxIDLen); p != "" {
		return Message{}, badRequest("id %s", p)
	}
	m := Message{Biz: uint16(b.Biz), ID: b.ID, Ack: b.Ack}
	switch {
	case b.Data != nil && b.DataBase64 != nil:
		return Message{}, badRequest("send data or data_base64, not both")
	case b.Data != nil:
		m.Data = []byte(*b.Data)
	case b.DataBase64 != nil:
		data, err := decodeBase64(*b.DataBase64)
		if err != nil {
			return Message{}, badRequest("data_base64 is not valid base64: %w", err)
		}
		m.Data = data
	}
	return m, nil
}

// decodeBase64 decodes standard base64 (RFC 4648 section 4) and, because
// businesses written in other languages often produce it, the URL-safe
// alphabet (section 5), each with or without '=' padding. The alphabet is
// picked by the presence of '-' or '_'; mixing the two is an error. Padding,
// when present, must be complete.
func decodeBase64(s string) ([]byte, error) {
	url := strings.ContainsAny(s, "-_")
	var enc *base64.Encoding
	switch padded := strings.HasSuffix(s, "="); {
	case url && padded:
		enc = base64.URLEncoding
	case url:
		enc = base64.RawURLEncoding
	case padded:
		enc = base64.StdEncoding
	default:
		enc = base64.RawStdEncoding
	}
	return enc.DecodeString(s)
}

// checkDevices checks a devices list of a push or members call.
func (s *server) checkDevices(devices []string) error {
	switch {
	case len(devices) == 0:
		return badRequest("devices must list at least one device")
	case len(devices) > s.maxDevices:
		return badRequest("devices lists %d devices, over the limit of %d", len(devices), s.maxDevices)
	}
	for i, d := range devices {
		if err := auth.ValidDevice(d); err != nil {
			return deviceError(fmt.Sprintf("devices[%d]", i), err)
		}
	}
	return nil
}

// pathDevice returns the path wildcard "device", checked as a device id.
// The mux has percent-decoded it, so any valid id can be named in a path.
func pathDevice(r *http.Request) (string, error) {
	device := r.PathValue("device")
	if err := auth.ValidDevice(device); err != nil {
		return "", deviceError("device", err)
	}
	return device, nil
}

// deviceError is the 400 for a device id that auth.ValidDevice refused,
// the rule LOGIN applies to a token's sub: the API takes exactly the ids
// that can log in. name says where the id was; the message quotes the
// id (escaped) so that the caller can find it.
func deviceError(name string, err error) error {
	var de *auth.DeviceError
	if errors.As(err, &de) {
		return badRequest("%s", de.Describe(name))
	}
	return badRequest("%s: %w", name, err)
}

// pathName returns the path wildcard key, checked as a name.
func pathName(r *http.Request, key string) (string, error) {
	name := r.PathValue(key)
	if p := nameProblem(name); p != "" {
		return "", badRequest("%s %s", key, p)
	}
	return name, nil
}

// nameProblem says what is wrong with s as a group or app name, or
// returns "" when nothing is.
func nameProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	return textProblem(s, maxNameLen)
}

// textProblem says what is wrong with s as a text of at most max bytes
// (empty is fine), or returns "" when nothing is. Names and texts end up
// in frames, logs and Redis keys, where control characters do harm.
func textProblem(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("is %d bytes, over the limit of %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains the control character %U", r)
		}
	}
	return ""
}
