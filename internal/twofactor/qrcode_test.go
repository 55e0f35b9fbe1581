package twofactor

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	gzqrcode "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/skip2/go-qrcode"
)

// quietZone is the width in modules of the white border a QR code needs.
const quietZone = 4

// qrTestURIs returns key URIs for the tricky issuers and accounts of the
// key URI tests and n more with random issuers, accounts and secrets.
func qrTestURIs(t *testing.T, n int) []string {
	t.Helper()
	var uris []string
	for _, c := range uriCases {
		uris = append(uris, KeyURI(c.issuer, c.account, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"))
	}

	// A fixed seed keeps failures reproducible.
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "Z", "9", " ", "+", "&", "=", "#", "?", "%", "/", ":", "@",
		"é", "ü", "ß", "中", "文", "δ", "-", ".", "_", "~"}
	word := func(maxLen int) string {
		var b strings.Builder
		for range 1 + rng.IntN(maxLen) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for range n {
		secret := make([]byte, SecretSize)
		for i := range secret {
			secret[i] = byte(rng.UintN(256))
		}
		uris = append(uris, KeyURI(word(20), word(60), EncodeSecret(secret)))
	}
	return uris
}

// decodePNG parses a PNG or fails the test.
func decodePNG(t *testing.T, data []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("png.Decode: %v", err)
	}
	return img
}

// isBlack reports whether c is a dark module colour, failing the test for
// anything that is neither black nor white.
func isBlack(t *testing.T, c color.Color) bool {
	t.Helper()
	r, g, b, a := c.RGBA()
	switch {
	case a == 0xffff && r == 0 && g == 0 && b == 0:
		return true
	case a == 0xffff && r == 0xffff && g == 0xffff && b == 0xffff:
		return false
	}
	t.Fatalf("pixel colour %v is neither black nor white", c)
	return false
}

// TestQRCodePNGGeometry checks the image pixel by pixel against the
// module grid: whole pixels per module and a white quiet zone.
func TestQRCodePNGGeometry(t *testing.T) {
	for i, uri := range qrTestURIs(t, 20) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			data, err := QRCodePNG(uri)
			if err != nil {
				t.Fatalf("QRCodePNG: %v", err)
			}
			img := decodePNG(t, data)
			b := img.Bounds()
			if b.Min != (image.Point{}) || b.Dx() != b.Dy() {
				t.Fatalf("image bounds %v, want a square at the origin", b)
			}

			// The module grid, quiet zone included, as the encoder sees it.
			code, err := qrcode.New(uri, qrcode.Medium)
			if err != nil {
				t.Fatalf("qrcode.New: %v", err)
			}
			modules := code.Bitmap()
			n := len(modules)
			if b.Dx()%n != 0 || b.Dx()/n != QRModulePixels {
				t.Fatalf("image is %d pixels for %d modules, want %d pixels per module",
					b.Dx(), n, QRModulePixels)
			}

			// Every pixel shows its module, so modules are whole squares.
			k := QRModulePixels
			for y := range b.Dy() {
				for x := range b.Dx() {
					if isBlack(t, img.At(x, y)) != modules[y/k][x/k] {
						t.Fatalf("pixel (%d,%d) differs from module (%d,%d)", x, y, x/k, y/k)
					}
				}
			}

			// The quiet zone is white, and the top-left finder pattern
			// starts right inside it.
			zone := quietZone * k
			for y := range b.Dy() {
				for x := range b.Dx() {
					inside := x >= zone && x < b.Dx()-zone && y >= zone && y < b.Dy()-zone
					if !inside && isBlack(t, img.At(x, y)) {
						t.Fatalf("quiet zone pixel (%d,%d) is black", x, y)
					}
				}
			}
			if !isBlack(t, img.At(zone, zone)) || !isBlack(t, img.At(zone+k-1, zone+k-1)) {
				t.Errorf("the finder pattern does not start at module %d", quietZone)
			}
		})
	}
}

// TestQRCodePNGTypicalSize keeps the image of an ordinary key URI within
// sensible bounds.
func TestQRCodePNGTypicalSize(t *testing.T) {
	secret := EncodeSecret(bytes.Repeat([]byte{0x5a}, SecretSize))
	data, err := QRCodePNG(KeyURI("authsvc", "alice@example.com", secret))
	if err != nil {
		t.Fatalf("QRCodePNG: %v", err)
	}
	// Between version 4 (33 modules) and version 10 (57) plus quiet zones:
	// large enough to scan from a screen, small enough to send.
	img := decodePNG(t, data)
	if w := img.Bounds().Dx(); w < (33+8)*QRModulePixels || w > (57+8)*QRModulePixels {
		t.Errorf("typical key URI gives a %d-pixel image", w)
	}
}

// TestQRCodePNGTooLong checks that content beyond QR capacity is an error,
// not a panic or a truncated code.
func TestQRCodePNGTooLong(t *testing.T) {
	if _, err := QRCodePNG(strings.Repeat("x", 5000)); err == nil {
		t.Fatal("QRCodePNG accepted content too long for any QR code")
	}
}

// TestQRCodePNGGozxing reads every image back with a Go decoder.
func TestQRCodePNGGozxing(t *testing.T) {
	t.Parallel()
	n := 200
	if testing.Short() {
		n = 20
	}
	reader := gzqrcode.NewQRCodeReader()
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true}

	for i, uri := range qrTestURIs(t, n) {
		data, err := QRCodePNG(uri)
		if err != nil {
			t.Fatalf("QRCodePNG(%q): %v", uri, err)
		}
		bmp, err := gozxing.NewBinaryBitmapFromImage(decodePNG(t, data))
		if err != nil {
			t.Fatalf("image %d: binary bitmap: %v", i, err)
		}
		res, err := reader.Decode(bmp, hints)
		if err != nil {
			t.Errorf("image %d of %q: decode: %v", i, uri, err)
			continue
		}
		if got := res.GetText(); got != uri {
			t.Errorf("image %d decodes to %q, want %q", i, got, uri)
		}
	}
}

// TestQRCodePNGZbar reads every image back with zbarimg, the decoder of
// the ZBar project, which shares no code with the encoder.
func TestQRCodePNGZbar(t *testing.T) {
	t.Parallel()
	zbarimg := lookTool(t, "zbarimg", "zbar-tools")
	n := 40
	if testing.Short() {
		n = 5
	}

	dir := t.TempDir()
	for i, uri := range qrTestURIs(t, n) {
		data, err := QRCodePNG(uri)
		if err != nil {
			t.Fatalf("QRCodePNG(%q): %v", uri, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("qr%d.png", i))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}

		var stderr bytes.Buffer
		cmd := exec.Command(zbarimg, "--quiet", "--raw", path)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("zbarimg on image %d of %q: %v: %s", i, uri, err, stderr.Bytes())
			continue
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != uri {
			t.Errorf("zbarimg reads image %d as %q, want %q", i, got, uri)
		}
	}
}

// BenchmarkQRCodePNG measures rendering a typical key URI, which every
// setup request does.
func BenchmarkQRCodePNG(b *testing.B) {
	uri := KeyURI("authsvc", "alice@example.com", EncodeSecret(make([]byte, SecretSize)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := QRCodePNG(uri); err != nil {
			b.Fatal(err)
		}
	}
}
